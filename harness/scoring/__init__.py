"""Summary quality: ROUGE against references plus reference-free signals, for Chinese and English.

Tokenisation (see harness.scoring.tokenizers): tokenizer="auto" scores Chinese one character per token
(as LCSTS and HELM's Chinese scenarios do) and English with rouge-score's tokeniser + Porter stemming.
"jieba" scores Chinese by jieba words instead. In every mode Latin words and numbers inside Chinese text
stay whole lower-cased words, CJK characters are never dropped (rouge-score's default tokeniser deletes
them, so two different Chinese summaries would tie), and punctuation is dropped.

Several references: per ROUGE type, the reference with the best F; P and R come from that same reference
(rouge-score's score_multi; see harness.scoring.rouge). ROUGE-Lsum splits sentences on newlines,
。！？； and ASCII .!? followed by a space, a CJK character or the end.

`score_summary` returns exactly SCORE_KEYS, which are results.csv columns.
"""

from __future__ import annotations

from collections.abc import Sequence

from harness.scoring.extractive import EXTRACTIVE_KEYS, fragment_stats
from harness.scoring.rouge import ROUGE_KEYS, rouge_scores
from harness.scoring.signals import (
    compression_ratio,
    detect_language,
    lang_match,
    novel_ngram_share,
    repetition_rate,
)
from harness.scoring.stats import ScoreCI, holm, t_interval
from harness.scoring.tokenizers import LANGS, TOKENIZERS, resolve_tokenizer, tokenize_cached
from harness.scoring.unsupported import UNSUPPORTED_KEYS, unsupported_scores

SIGNAL_KEYS: tuple[str, ...] = (
    "rouge_tokenizer",
    "compression_ratio",
    "novel_1gram",
    "novel_2gram",
    "repetition_rate",
    "lang_match",
)
# Copying and unsupported content (harness.scoring.extractive, harness.scoring.unsupported): need the source.
SOURCE_KEYS: tuple[str, ...] = EXTRACTIVE_KEYS + UNSUPPORTED_KEYS
SCORE_KEYS: tuple[str, ...] = ROUGE_KEYS + SIGNAL_KEYS + SOURCE_KEYS

__all__ = [
    "LANGS",
    "SCORE_KEYS",
    "TOKENIZERS",
    "ScoreCI",
    "detect_language",
    "holm",
    "score_summary",
    "t_interval",
]


def score_summary(
    prediction: str,
    references: Sequence[str],
    lang: str,
    source: str | None = None,
    tokenizer: str = "auto",
) -> dict[str, float | str | bool | None]:
    """Score one summary; keys are SCORE_KEYS, scores 0-1.

    `lang` is the language the summary was requested in ("zh"/"en"); `source` (the talk text) feeds
    compression_ratio, novel n-grams, the fragment statistics and the unsupported-content counts, which are
    None without it. ROUGE values are None when there is
    no non-empty reference; an empty prediction scores 0 everywhere. Unknown `lang`/`tokenizer` raise
    HarnessError.
    """
    if isinstance(references, str):
        # A bare string is a Sequence[str] of characters: scoring against each character is never meant.
        raise TypeError("references must be a list of strings, not a single string")
    name = resolve_tokenizer(tokenizer, lang)
    prediction = prediction or ""
    summary_tokens = tokenize_cached(name, prediction)
    source_tokens = tokenize_cached(name, source) if source is not None else ()

    scores: dict[str, float | str | bool | None] = dict(rouge_scores(prediction, references, name))
    scores["rouge_tokenizer"] = name
    scores["compression_ratio"] = compression_ratio(summary_tokens, source_tokens)
    scores["novel_1gram"] = novel_ngram_share(summary_tokens, source_tokens, 1)
    scores["novel_2gram"] = novel_ngram_share(summary_tokens, source_tokens, 2)
    scores["repetition_rate"] = repetition_rate(summary_tokens)
    scores["lang_match"] = lang_match(prediction, lang)
    scores.update(fragment_stats(summary_tokens, source_tokens))
    scores.update(unsupported_scores(prediction, source, lang))
    return scores
