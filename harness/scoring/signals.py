"""Reference-free signals about a summary: length, copying, degeneration, language.

All work on the same tokens ROUGE uses (one per CJK character for Chinese), so they are comparable
across models within one language but not between a Chinese and an English run.

- compression_ratio  summary tokens / source tokens
- novel_<n>gram      share of the summary's n-grams (counted with repeats) that never occur in the source:
                     0 = pure copying, 1 = nothing copied
- repetition_rate    share of the summary's 4-grams that repeat an earlier 4-gram of the summary: a model
                     stuck in a loop ("的的的的..." or a repeated phrase) approaches 1
- lang_match         the summary is written in the requested language
- degenerate         `is_degenerate`: the generation ran into the token cap while looping
                     (repetition_rate > DEGENERATE_REPETITION), or came out in the wrong language

A summary too short to have any n-gram gets 0 for the n-gram shares (an empty summary copies and repeats
nothing); a missing or empty source gives None for the source-based signals.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Final

from harness.scoring.tokenizers import has_cjk


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def compression_ratio(summary: Sequence[str], source: Sequence[str]) -> float | None:
    return len(summary) / len(source) if source else None


def novel_ngram_share(summary: Sequence[str], source: Sequence[str], n: int) -> float | None:
    if not source:
        return None
    grams = ngrams(summary, n)
    if not grams:
        return 0.0
    seen = set(ngrams(source, n))
    return sum(1 for g in grams if g not in seen) / len(grams)


def repetition_rate(tokens: Sequence[str], n: int = 4) -> float:
    grams = ngrams(tokens, n)
    if not grams:
        return 0.0
    seen: set[tuple[str, ...]] = set()
    repeats = 0
    for g in grams:
        if g in seen:
            repeats += 1
        seen.add(g)
    return repeats / len(grams)


def _script(ch: str) -> str:
    if has_cjk(ch):
        # Han and kana together here; kana is told apart below.
        return "kana" if "\u3040" <= ch <= "\u30ff" or "\u31f0" <= ch <= "\u31ff" else "han"
    if ch.isascii() or unicodedata.name(ch, "").startswith("LATIN"):
        return "latin"
    return "other"


def detect_language(text: str) -> str | None:
    """'zh', 'en', 'other' (Japanese, Russian, ...), or None for text without letters.

    Like harness.corpus.detect_lang, Chinese counts as soon as Han characters are over 20% of the
    letters: Chinese technical prose is full of Latin terms ("Qwen2.5 在 MMLU 上..."), each a word of
    several letters against one character per Chinese syllable. Unlike it, kana-heavy (Japanese) and
    non-Latin alphabetic text (Cyrillic, Hangul, ...) are 'other' instead of passing as zh or en.
    """
    counts = {"han": 0, "kana": 0, "latin": 0, "other": 0}
    for ch in unicodedata.normalize("NFKC", text):
        if ch.isalpha():
            counts[_script(ch)] += 1
    letters = sum(counts.values())
    if not letters:
        return None
    if (counts["kana"] + counts["other"]) / letters > 0.3:
        return "other"
    return "zh" if counts["han"] / letters > 0.2 else "en"


def lang_match(text: str, lang: str) -> bool:
    return detect_language(text) == lang


# A summary that ran into the token cap with more than this share of repeated 4-grams is a loop, not a
# summary. Calibration on the built-in corpus (ROUGE tokens, one per CJK character): the hand-written
# reference summaries repeat 0-4 % of their 4-grams and the talks themselves 5-10 %; the baseline's
# looping outputs (the same sentence numbered 1 to 12, "生命中生命中...") 28-85 %. 0.2 sits at twice the
# most repetitive talk, far from both.
DEGENERATE_REPETITION: Final = 0.2
# A model whose judged outputs are more than this share degenerate is flagged wherever its ROUGE is shown
# (run summary, report, compare): the score then measures text copied into a loop, not summaries.
MOSTLY_DEGENERATE: Final = 0.5


def is_degenerate(
    stop_reason: str | None, repetition_rate: float | None, lang_match: bool | None
) -> bool | None:
    """True when a summary is output a reader would not call a summary: it hit the generation cap
    (`stop_reason == "length"`) while repeating itself (`repetition_rate > DEGENERATE_REPETITION`), or
    it is not in the requested language (`lang_match is False`).

    None when nothing is known (an error row: no repetition rate and no language verdict); False
    otherwise. A natural stop (`eos`) is never degenerate on repetition alone: a short list may repeat
    a phrase legitimately, but a model that stops on its own did not get stuck.
    """
    if lang_match is False:
        return True
    if repetition_rate is None or repetition_rate != repetition_rate:  # None or NaN
        return None if lang_match is None else False
    return stop_reason == "length" and repetition_rate > DEGENERATE_REPETITION
