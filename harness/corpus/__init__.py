"""The talks to summarise: the built-in summit corpus, or a user's JSONL file.

JSONL schema, one talk per line:
    {"id": str, "text": str, "references": [str, ...], "lang": "zh"|"en" (optional),
     "speaker": str, "organisation": str, "title": str,            (optional, built-in corpus)
     "references_by_lang": {"en": [str, ...]}}                     (optional, extra languages)

`references` are in the talk's own language `lang`; `references_by_lang` holds references in other
languages, so a run that asks for English summaries of Chinese talks can still be scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.jsonl import read_objects

BUILTIN_CORPUS = "summit"


@dataclass(frozen=True)
class Talk:
    id: str
    text: str
    references: tuple[str, ...]
    lang: str = "zh"
    speaker: str = ""
    organisation: str = ""
    title: str = ""
    references_by_lang: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def references_for(self, lang: str) -> tuple[str, ...]:
        """References written in `lang` (empty when the corpus has none in that language)."""
        if lang == self.lang:
            return self.references
        return self.references_by_lang.get(lang, ())


def builtin_corpus_path() -> Path:
    return Path(str(resources.files("harness.corpus") / "data" / "talks.jsonl"))


def detect_lang(text: str) -> str:
    """'zh' when CJK characters make up a fair share of the letters, else 'en'."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf")
    letters = sum(1 for ch in text if ch.isalpha())
    return "zh" if letters and cjk / letters > 0.2 else "en"


def _parse_line(obj: dict[str, Any], where: str) -> Talk:
    for key in ("id", "text"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise HarnessError(f'{where}: "{key}" must be a non-empty string')
    refs = obj.get("references")
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
        raise HarnessError(f'{where}: "references" must be a non-empty list of strings')
    lang = obj.get("lang") or detect_lang(obj["text"])
    if lang not in ("zh", "en"):
        raise HarnessError(f'{where}: "lang" must be "zh" or "en", got "{lang}"')
    by_lang_raw = obj.get("references_by_lang") or {}
    if not isinstance(by_lang_raw, dict):
        raise HarnessError(f'{where}: "references_by_lang" must map a language to a list of strings')
    by_lang = {k: tuple(v) for k, v in by_lang_raw.items()}
    return Talk(
        id=obj["id"],
        text=obj["text"],
        references=tuple(refs),
        lang=lang,
        speaker=obj.get("speaker", ""),
        organisation=obj.get("organisation", ""),
        title=obj.get("title", ""),
        references_by_lang=by_lang,
    )


def load_corpus(path: Path | None = None) -> list[Talk]:
    """Load talks from `path` (JSONL), or the built-in summit corpus when `path` is None."""
    source = path or builtin_corpus_path()
    if not source.is_file():
        raise HarnessError(f"corpus file not found: {source}; pass --corpus FILE.jsonl")
    talks: list[Talk] = []
    seen: set[str] = set()
    for _, where, obj in read_objects(source, "a JSON object with id, text, references"):
        talk = _parse_line(obj, where)
        if talk.id in seen:
            raise HarnessError(f'{where}: duplicate talk id "{talk.id}"')
        seen.add(talk.id)
        talks.append(talk)
    if not talks:
        raise HarnessError(f"corpus {source} has no talks")
    return talks
