"""Extractive fragment statistics (Grusky, Naaman & Artzi 2018, "Newsroom"): how a summary copies its source.

A *fragment* is a maximal run of summary tokens that also occurs, in the same order and contiguous, in the
source. Fragments are found greedily left to right: at each summary position the longest source match
starting there is taken (a position with no match is skipped), and matching resumes after it. From the
fragment lengths |f| over a summary of |S| tokens:

- coverage = sum |f| / |S|      share of summary tokens inside copied fragments (0-1): how much is copied
- density  = sum |f|^2 / |S|    mean length of the fragment each summary token sits in: long copied
                                 stretches (whole sentences) give a high density, scattered words a low one
- longest  = max |f|            the longest single copied stretch, in tokens

A summary can have a high coverage and a low density (it reuses the source's words, rephrased) or both high
(it pastes sentences). Neither is better in itself, which is why the columns have no direction.

The tokens are ROUGE's (harness.scoring.tokenizers): one per CJK character for Chinese, so a copied Chinese
word of two characters is a fragment of length 2, and densities of Chinese and English runs are not
comparable. Grusky's loop takes the first longest match it meets while scanning the source; here every
source position holding the summary token is tried (via an index of positions), so the match taken is the
longest one, and the cost is the summary length times the number of occurrences of each token, not the
product of both lengths.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

EXTRACTIVE_KEYS: tuple[str, ...] = ("extractive_coverage", "extractive_density", "longest_fragment")


def fragments(summary: Sequence[str], source: Sequence[str]) -> list[int]:
    """Lengths of the greedy copied fragments of `summary` in `source`, in summary order."""
    positions: dict[str, list[int]] = defaultdict(list)
    for j, token in enumerate(source):
        positions[token].append(j)
    out: list[int] = []
    i, n, m = 0, len(summary), len(source)
    while i < n:
        best = 0
        for j in positions.get(summary[i], ()):
            k = 0
            while i + k < n and j + k < m and summary[i + k] == source[j + k]:
                k += 1
            if k > best:
                best = k
                if i + best == n:
                    break  # the rest of the summary is one fragment: nothing can be longer
        if best:
            out.append(best)
            i += best
        else:
            i += 1
    return out


def fragment_stats(summary: Sequence[str], source: Sequence[str] | None) -> dict[str, float | int | None]:
    """EXTRACTIVE_KEYS for one summary; all None without a source (nothing to copy from), 0 for an empty
    summary (it copies nothing)."""
    if not source:
        return dict.fromkeys(EXTRACTIVE_KEYS)
    if not summary:
        return {"extractive_coverage": 0.0, "extractive_density": 0.0, "longest_fragment": 0}
    lengths = fragments(summary, source)
    n = len(summary)
    return {
        "extractive_coverage": sum(lengths) / n,
        "extractive_density": sum(f * f for f in lengths) / n,
        "longest_fragment": max(lengths, default=0),
    }
