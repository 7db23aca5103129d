"""The talks to summarise: the built-in summit corpus, or a user's JSONL file.

JSONL schema, one talk per line:
    {"id": str, "text": str, "references": [str, ...], "lang": "zh"|"en" (optional),
     "speaker": str, "organisation": str, "title": str,            (optional, built-in corpus)
     "references_by_lang": {"en": [str, ...]}}                     (optional, extra languages)

`references` are in the talk's own language `lang`; `references_by_lang` holds references in other
languages, so a run that asks for English summaries of Chinese talks can still be scored.

Built-in corpora are named (`--corpus talks`, the default; `--corpus summit-reports`, the two whole seed
reports as long documents); anything else given to `--corpus` is a JSONL file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.jsonl import read_objects

BUILTIN_CORPUS = "talks"
# name -> file in data/; both derived from the seed articles by `harness corpus derive`.
BUILTIN_CORPORA: dict[str, str] = {"talks": "talks.jsonl", "summit-reports": "summit-reports.jsonl"}


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


def builtin_corpus_path(name: str = BUILTIN_CORPUS) -> Path:
    return Path(str(resources.files("harness.corpus") / "data" / BUILTIN_CORPORA[name]))


def builtin_name(source: str | Path | None) -> str | None:
    """The built-in corpus `source` names (None = the default), or None when it is a file path. A name wins
    only when no file of that name exists, so `--corpus ./talks` still reads a local file."""
    if source is None:
        return BUILTIN_CORPUS
    text = str(source)
    if text in BUILTIN_CORPORA and not Path(text).is_file():
        return text
    return None


def corpus_path(source: str | Path | None) -> Path:
    """The JSONL file behind `--corpus` (a built-in name or a path)."""
    name = builtin_name(source)
    return builtin_corpus_path(name) if name else Path(source)  # type: ignore[arg-type]


def corpus_label(source: str | Path | None) -> str:
    """How run.json names the corpus: `builtin:talks`, `builtin:summit-reports` or the path given."""
    name = builtin_name(source)
    return f"builtin:{name}" if name else str(source)


def detect_lang(text: str) -> str:
    """'zh' when CJK characters make up a fair share of the letters, else 'en'."""
    cjk = sum(1 for ch in text if "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf")
    letters = sum(1 for ch in text if ch.isalpha())
    return "zh" if letters and cjk / letters > 0.2 else "en"


# A talk id: what `--talks` names and results.csv rows carry. Any Unicode letter or digit (ids may be Chinese),
# never a formula prefix, whitespace, a control, format (bidi, zero-width) or other invisible character.
TALK_ID = re.compile(r"^[^\W_][\w.-]{0,127}$")


def _parse_line(obj: dict[str, Any], where: str) -> Talk:
    for key in ("id", "text"):
        if not isinstance(obj.get(key), str) or not obj[key].strip():
            raise HarnessError(f'{where}: "{key}" must be a non-empty string')
    if not TALK_ID.match(obj["id"]):
        shown = obj["id"].encode("unicode_escape").decode("ascii")[:60]
        raise HarnessError(
            f'{where}: talk id "{shown}" is not a plain name: use letters, digits, ".", "_" and "-", starting with '
            "a letter or digit (ids name rows in CSV files and on the command line: a leading =, +, - or @ would "
            "be a spreadsheet formula, an invisible or bidi character an id that looks like another)"
        )
    refs = obj.get("references")
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) and r.strip() for r in refs):
        raise HarnessError(f'{where}: "references" must be a non-empty list of strings')
    lang = obj.get("lang") or detect_lang(obj["text"])
    if lang not in ("zh", "en"):
        raise HarnessError(f'{where}: "lang" must be "zh" or "en", got "{lang}"')
    by_lang_raw = obj.get("references_by_lang") or {}
    shape = '"references_by_lang" must map "zh"/"en" to a non-empty list of strings, e.g. {"en": ["..."]}'
    if not isinstance(by_lang_raw, dict):
        raise HarnessError(f"{where}: {shape}")
    for key, value in by_lang_raw.items():
        if key not in ("zh", "en"):
            raise HarnessError(f'{where}: {shape}; got the key "{key}"')
        # A bare string would iterate into one-character "references": refuse it rather than score against it.
        if not isinstance(value, list) or not value or not all(isinstance(r, str) and r.strip() for r in value):
            got = json.dumps(value, ensure_ascii=False)[:40]
            raise HarnessError(f'{where}: {shape}; "{key}" holds {type(value).__name__} {got}')
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


def load_corpus(path: str | Path | None = None) -> list[Talk]:
    """Load talks (documents) from a built-in corpus name or a JSONL path; the talks corpus when None."""
    source = corpus_path(path)
    if not source.is_file():
        names = ", ".join(BUILTIN_CORPORA)
        raise HarnessError(f"corpus file not found: {source}; pass --corpus FILE.jsonl or a built-in name ({names})")
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
