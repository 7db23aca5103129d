"""Tokenisers and sentence splitting for ROUGE on Chinese, English and mixed text.

rouge-score's default tokeniser lower-cases and turns every character outside [a-z0-9] into a space, so
it deletes Chinese entirely: two different Chinese summaries then both tokenise to [] (or to the same few
Latin words) and score identically. Every tokeniser here therefore keeps CJK characters. All of them
NFKC-normalise first, so full-width Latin and digits ("Ｑｗｅｎ２") match their ASCII forms.

- ``char``   every CJK character (Han, kana) is one token, as LCSTS and HELM's Chinese scenarios score;
             runs of other letters/digits are one lower-cased word; punctuation is dropped.
- ``jieba``  jieba word segmentation for the CJK parts; Latin words as in ``char``.
- ``porter`` rouge-score's own tokeniser with Porter stemming (the usual English setting), applied to the
             text between CJK characters, which stay one token each. On text without CJK it gives exactly
             rouge-score's tokens.

This module is named ``tokenizers`` rather than ``tokenize`` so it never shadows the standard library.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Callable
from functools import cache, lru_cache
from typing import Protocol

from harness.errors import HarnessError, unknown

# Scripts written without spaces between words, scored one character per token: CJK Unified Ideographs
# (+ Extension A, compatibility block, supplementary planes B-G) and Japanese kana.
_CHAR_SCRIPT = "\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_CHAR_SCRIPT_RE = re.compile(f"[{_CHAR_SCRIPT}]")
_SPLIT_CHAR_SCRIPT_RE = re.compile(f"([{_CHAR_SCRIPT}])")
# One CJK character, or a run of word characters that are not CJK and not "_" (Latin words, numbers,
# Cyrillic, Hangul words...). "3.5" gives "3" and "5", as rouge-score does.
_CHAR_TOKEN_RE = re.compile(f"[{_CHAR_SCRIPT}]|[^\\W_{_CHAR_SCRIPT}]+")

# Sentence ends for ROUGE-Lsum. Chinese full-width 。！？； always end a sentence (plus any closing
# quote/bracket). ASCII .!? end one only before whitespace, end of text or a CJK character, so that
# "3.5" and "v1.2" stay whole; Chinese models often write ASCII "!" directly before the next sentence.
_SENTENCE_END_RE = re.compile(f"([。！？；]+[”’」』）)]*|[.!?]+[\"'”’)]*(?=\\s|$|[{_CHAR_SCRIPT}]))")

TOKENIZERS: tuple[str, ...] = ("auto", "char", "jieba", "porter")
LANGS: tuple[str, ...] = ("zh", "en")


class Tokenizer(Protocol):
    """What rouge_score.rouge_scorer.RougeScorer(tokenizer=...) calls."""

    def tokenize(self, text: str) -> list[str]: ...


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def has_cjk(text: str) -> bool:
    return _CHAR_SCRIPT_RE.search(text) is not None


class CharTokenizer:
    """One token per CJK character; lower-cased words for everything else; punctuation dropped."""

    name = "char"

    def tokenize(self, text: str) -> list[str]:
        return _CHAR_TOKEN_RE.findall(_nfkc(text).lower())


class JiebaTokenizer:
    """jieba words for Chinese; non-CJK pieces re-tokenised like CharTokenizer so "Qwen2.5" matches."""

    name = "jieba"

    def __init__(self) -> None:
        import jieba  # deferred: building jieba's prefix dictionary takes about a second

        # jieba logs "Building prefix dict..." at INFO on first use, which would pollute CLI output.
        jieba.setLogLevel(logging.WARNING)
        self._cut: Callable[[str], list[str]] = jieba.lcut

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        for piece in self._cut(_nfkc(text)):
            if has_cjk(piece):
                # A dictionary word; may mix scripts ("T恤"), so lower-case like everything else.
                tokens.append(piece.strip().lower())
            else:
                # jieba keeps "Qwen2.5", "C++" and "GPT-4" whole; split them the same way as "char" does.
                tokens.extend(_CHAR_TOKEN_RE.findall(piece.lower()))
        return tokens


class _CachedStemmer:
    """Porter stemming memoised per word: talks repeat the same words, and nltk's stemmer is slow."""

    def __init__(self) -> None:
        from nltk.stem import porter

        self.stem: Callable[[str], str] = lru_cache(maxsize=65536)(porter.PorterStemmer().stem)


class PorterTokenizer:
    """rouge-score's tokeniser + Porter stemmer between CJK characters; CJK characters kept one each.

    Keeping CJK means a Chinese answer to an English request is compared character by character
    instead of being deleted (which would make all such answers tie).
    """

    name = "porter"

    def __init__(self) -> None:
        from rouge_score import tokenize as rouge_tokenize

        self._tokenize = rouge_tokenize.tokenize
        self._stemmer = _CachedStemmer()

    def tokenize(self, text: str) -> list[str]:
        tokens: list[str] = []
        # re.split with a capture group alternates [text, cjk, text, cjk, ..., text].
        for i, part in enumerate(_SPLIT_CHAR_SCRIPT_RE.split(_nfkc(text))):
            if i % 2:
                tokens.append(part)
            elif part:
                tokens.extend(self._tokenize(part, self._stemmer))
        return tokens


_FACTORIES: dict[str, Callable[[], Tokenizer]] = {
    "char": CharTokenizer,
    "jieba": JiebaTokenizer,
    "porter": PorterTokenizer,
}


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise unknown("summary language", str(lang), LANGS)
    return lang


def resolve_tokenizer(tokenizer: str, lang: str) -> str:
    """The concrete tokeniser name for a choice and a requested summary language.

    "auto" is "char" for Chinese and "porter" for English. "porter" on Chinese is refused: stemming and
    whole-word matching make no sense for Chinese, and it would hide a wrong setting.
    """
    check_lang(lang)
    if tokenizer not in TOKENIZERS:
        raise unknown("ROUGE tokenizer", str(tokenizer), TOKENIZERS)
    if tokenizer == "auto":
        return "char" if lang == "zh" else "porter"
    if tokenizer == "porter" and lang == "zh":
        raise HarnessError('tokenizer "porter" is for English; use --tokenizer char or jieba for Chinese')
    return tokenizer


@cache
def get_tokenizer(name: str) -> Tokenizer:
    """The shared tokeniser instance for a concrete name ("char", "jieba" or "porter")."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise unknown("ROUGE tokenizer", name, _FACTORIES) from None
    return factory()


@lru_cache(maxsize=64)
def tokenize_cached(name: str, text: str) -> tuple[str, ...]:
    """Tokens of `text`, memoised: a run scores every model and repeat against the same talk text."""
    return tuple(get_tokenizer(name).tokenize(text))


def split_sentences(text: str) -> list[str]:
    """Sentences of `text` for ROUGE-Lsum: on newlines, 。！？；, and ASCII .!? before a space/CJK/end.

    A regex rather than nltk's punkt, whose data is a separate download; it may split after "e.g.".
    """
    marked = _SENTENCE_END_RE.sub("\\1\n", text)
    return [s.strip() for s in marked.split("\n") if s.strip()]
