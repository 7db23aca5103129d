"""ROUGE-1/2/L/Lsum via rouge-score's RougeScorer with a CJK-aware tokeniser.

Best of several references: for each ROUGE type separately, the reference with the highest F-measure
is chosen and that same reference's precision and recall are reported (rouge-score's `score_multi`
rule), so P, R and F of one type always describe one comparison. Different types may pick different
references, as HELM's max-per-metric does.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from harness.scoring.tokenizers import get_tokenizer, split_sentences

if TYPE_CHECKING:
    from rouge_score.rouge_scorer import RougeScorer

ROUGE_TYPES: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")
# rougeLsum has only F in the results schema; P/R of the summary-level LCS add little over rougeL's.
ROUGE_KEYS: tuple[str, ...] = (
    "rouge1_f",
    "rouge2_f",
    "rougeL_f",
    "rougeLsum_f",
    "rouge1_p",
    "rouge1_r",
    "rouge2_p",
    "rouge2_r",
    "rougeL_p",
    "rougeL_r",
)


@cache
def _scorer(tokenizer: str) -> RougeScorer:
    from rouge_score import rouge_scorer  # deferred: imports nltk, about a second

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=get_tokenizer(tokenizer))


def _sentence_lines(text: str) -> str:
    # rougeLsum splits on "\n" only; the other types ignore the newlines (tokenisers drop whitespace).
    return "\n".join(split_sentences(text))


def rouge_scores(prediction: str, references: Sequence[str], tokenizer: str) -> dict[str, float | None]:
    """ROUGE P/R/F (0-1) of `prediction`, best over `references`; all None when there is no reference.

    No reference is not the same as a bad summary, so it yields None (an empty CSV cell), never 0.
    An empty prediction scores 0.
    """
    refs = [_sentence_lines(r) for r in references if r.strip()]
    if not refs:
        return dict.fromkeys(ROUGE_KEYS)
    best = _scorer(tokenizer).score_multi(refs, _sentence_lines(prediction))
    out: dict[str, float | None] = {}
    for key in ROUGE_KEYS:
        rouge_type, part = key.rsplit("_", 1)
        score = best[rouge_type]
        out[key] = float({"f": score.fmeasure, "p": score.precision, "r": score.recall}[part])
    return out
