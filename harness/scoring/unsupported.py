"""Unsupported content: numbers and named entities a summary states that its source does not contain.

A hallucination PROXY, not a faithfulness score: a number or a name missing from the talk is a strong sign
that the summary made it up, but a summary can misstate a fact using only numbers and names of the talk
("Qwen2.5 has 72 layers" when 72 is its parameter count), and a correct paraphrase can round a number
("about 1.5 亿" for "1.48 亿") or translate a name and be flagged. Read the counts beside the summaries.

Numbers (`unsupported_numbers`: distinct values in the summary absent from the source)
- NFKC first, so full-width digits and ％ are ASCII; "1,000" is 1000; 万/亿/万亿 and thousand/million/billion
  after a number multiply it, so "3万" = "30000" = "30 thousand"; "%"/"％"/"percent" after a number and
  "百分之" before it make a percentage, which only a percentage of the source supports. Values are compared
  exactly (Decimal), so 1.50 = 1.5 and 05 = 5 (dates such as 2024-05-01 give 2024, 5, 1).
- Left out: list numbering ("1." / "2、" at the start of a line), digits glued to Latin letters ("Qwen2.5",
  "GPT-4", "7B": names, counted as entities), and numbers written in Chinese characters (二十): a rule for
  them would read 一 in 统一 or 一些 as the number one.

Entities (`unsupported_entities`: distinct names absent from the source; `supported_entity_share`: the share
of the summary's distinct names found in the source, None when it names nothing)
- Chinese: `jieba.posseg` words tagged nr/nrfg/nrt (persons), ns (places), nt (organisations) or nz (other
  proper nouns), two characters or more.
- Latin script (English summaries, and the Latin terms inside Chinese ones): runs of capitalised words
  ("Alibaba Cloud"), words with digits or inner capitals ("Qwen2.5", "iPhone") and acronyms ("MMLU"). A
  capitalised word at the start of an English sentence counts only when it never occurs in lower case in
  the summary or the source ("Alibaba" yes, "Large" no) and is not a function word.
- A name is supported when it occurs in the source text, compared lower-cased with whitespace removed
  ("Qwen 2.5" matches "Qwen2.5"). Entities are None when the summary and the source are in different
  languages (an English summary of a Chinese talk): a name cannot be looked up across a translation.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

UNSUPPORTED_KEYS: tuple[str, ...] = ("unsupported_numbers", "unsupported_entities", "supported_entity_share")

_MULTIPLIERS: dict[str, Decimal] = {
    "万亿": Decimal(10) ** 12,
    "亿": Decimal(10) ** 8,
    "万": Decimal(10) ** 4,
    "thousand": Decimal(10) ** 3,
    "million": Decimal(10) ** 6,
    "billion": Decimal(10) ** 9,
    "trillion": Decimal(10) ** 12,
}
_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9.])(?<![A-Za-z]-)(?P<pre>百分之\s*)?"
    r"(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(?P<frac>\d+))?"
    r"(?P<mult>\s*(?:万亿|亿|万|(?:thousand|million|billion|trillion)\b))?"
    r"(?P<pct>\s*(?:%|percent\b|per\s+cent\b))?",
    re.IGNORECASE,
)
# "1." / "2、" / "(3)" numbering a list item at the start of a line, after markdown or HTML markup ("**1.",
# "<strong>1."): structure, not a stated number.
_LIST_MARKER_RE = re.compile(r"(?m)^((?:\s|[#>*+-]|</?[A-Za-z]+>)*)[(（]?\d{1,2}(?:\.(?!\d)|[、)）]|\s*[)）])")

_LATIN_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[.'&+-][A-Za-z0-9]+)*")
_SENTENCE_START_RE = re.compile(r"(?:^|[.!?:;。！？；\n])[\s\"'“‘(（*#>\-\d.、]*$")
# Function words that start English sentences; never names even when nothing else tells.
_FUNCTION_WORDS = frozenset(
    re.findall(
        r"\w+",
        "a an the this that these those it its we our they their he she his her i in on at by for from to of "
        "with and but or as also then however overall finally first second third next summary speaker talk "
        "there here what how why when where which who",
    )
)
_JIEBA_ENTITY_FLAGS = frozenset({"nr", "nrfg", "nrt", "ns", "nt", "nz"})
_CJK_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass
class Unsupported:
    """What was found in one summary, for the columns and for people (docs, debugging a flag)."""

    numbers: list[str] = field(default_factory=list)  # distinct values in the summary, "30000", "20%"
    unsupported_numbers: list[str] = field(default_factory=list)
    entities: list[str] | None = None  # None: not checked (languages differ)
    unsupported_entities: list[str] | None = None

    def scores(self) -> dict[str, Any]:
        entities, missing = self.entities, self.unsupported_entities
        return {
            "unsupported_numbers": len(self.unsupported_numbers),
            "unsupported_entities": None if missing is None else len(missing),
            "supported_entity_share": (1 - len(missing) / len(entities)) if entities and missing is not None else None,
        }


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def _value(m: re.Match[str]) -> str | None:
    digits = m.group("int").replace(",", "") + ("." + m.group("frac") if m.group("frac") else "")
    try:
        value = Decimal(digits)
    except InvalidOperation:  # pragma: no cover - the regex only matches digits
        return None
    mult = (m.group("mult") or "").strip().lower()
    if mult:
        value *= _MULTIPLIERS[mult]
    pct = bool(m.group("pre") or m.group("pct"))
    text = format(value.normalize(), "f")
    text = text.rstrip("0").rstrip(".") if "." in text else text
    return text + ("%" if pct else "")


def numbers(text: str) -> list[str]:
    """Distinct normalised numbers stated in `text`, in order of appearance ("30000", "20%", "1.5")."""
    text = _LIST_MARKER_RE.sub(lambda m: m.group(1) + " ", _nfkc(text))
    found: dict[str, None] = {}
    for m in _NUMBER_RE.finditer(text):
        end = m.end()
        glued = end < len(text) and text[end].isascii() and text[end].isalpha()
        if glued and not m.group("mult") and not m.group("pct"):
            continue  # "7B", "10x", "3D": part of a name or a unit word, not a stated figure
        value = _value(m)
        if value is not None:
            found[value] = None
    return list(found)


def _key(text: str) -> str:
    return "".join(_nfkc(text).lower().split())


def _is_name_like(word: str) -> bool:
    """A Latin word that is a name whatever its position: digits with letters, inner capitals, acronyms."""
    return any(c.isdigit() for c in word) or any(c.isupper() for c in word[1:])


def latin_entities(text: str, *, english: bool, lowercase_pool: str = "") -> list[str]:
    """Capitalised spans of Latin words in `text` (see the module docstring). `english`: sentence starts are
    capitalised anyway, so a plain capitalised first word needs more evidence; `lowercase_pool`: text whose
    lower-case words tell common words from names."""
    text = _nfkc(text)
    lower_words = {w for w in _LATIN_WORD_RE.findall(text + "\n" + lowercase_pool) if w.islower()}
    spans: list[list[str]] = []
    last_end = -1
    for m in _LATIN_WORD_RE.finditer(text):
        word = m.group(0)
        if not (word[0].isupper() or _is_name_like(word)):
            last_end = -1
            continue
        initial = bool(_SENTENCE_START_RE.search(text[: m.start()]))
        common = word.lower() in _FUNCTION_WORDS or word.lower() in lower_words
        if english and initial and not _is_name_like(word) and common:
            last_end = -1
            continue
        if spans and last_end >= 0 and text[last_end : m.start()] in (" ", "-"):
            spans[-1].append(word)
        else:
            spans.append([word])
        last_end = m.end()
    out: dict[str, None] = {}
    for span in spans:
        while span and span[0].lower() in _FUNCTION_WORDS and not _is_name_like(span[0]):
            span = span[1:]  # "The Qwen Team" -> "Qwen Team"
        if span:
            out[" ".join(span)] = None
    return list(out)


@cache
def _posseg() -> Any:
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)  # "Building prefix dict..." would pollute CLI output
    return jieba.posseg


def chinese_entities(text: str) -> list[str]:
    """Distinct jieba.posseg person/place/organisation/proper-noun words (two characters or more)."""
    out: dict[str, None] = {}
    for pair in _posseg().cut(_nfkc(text)):
        word, flag = pair.word.strip(), pair.flag
        if flag in _JIEBA_ENTITY_FLAGS and len(word) >= 2 and _CJK_RE.search(word):
            out[word] = None
    return list(out)


def entities(text: str, lang: str, lowercase_pool: str = "") -> list[str]:
    """Distinct named entities of `text` written in `lang` ("zh" or "en")."""
    found = latin_entities(text, english=lang == "en", lowercase_pool=lowercase_pool)
    if lang == "zh":
        found = chinese_entities(text) + found
    return list(dict.fromkeys(found))


def find_unsupported(summary: str, source: str, lang: str) -> Unsupported:
    """Numbers and entities of `summary` (requested in `lang`) that `source` does not contain."""
    from harness.scoring.signals import detect_language

    source_numbers = set(numbers(source))
    mine = numbers(summary)
    report = Unsupported(numbers=mine, unsupported_numbers=[n for n in mine if n not in source_numbers])
    source_lang = detect_language(source)
    if source_lang == lang:
        names = entities(summary, lang, lowercase_pool=source)
        haystack = _key(source)
        report.entities = names
        report.unsupported_entities = [e for e in names if _key(e) not in haystack]
    return report


def unsupported_scores(summary: str, source: str | None, lang: str) -> dict[str, Any]:
    """UNSUPPORTED_KEYS for one summary; all None without a source."""
    if not source:
        return dict.fromkeys(UNSUPPORTED_KEYS)
    return find_unsupported(summary or "", source, lang).scores()
