"""JSON Lines input shared by corpus files, score inputs and run summaries: one object per line, and a
malformed line (bad JSON, not UTF-8) is a one-line error naming `file:line`.

A run's own summaries.jsonl may end in a torn line when the run was killed while writing it (see
`harness.results.durable`); readers of run output pass `torn_tail` to skip that last line with a warning
instead of refusing the whole file. User input (a corpus, a score file) stays strict.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def parse_object(raw: str, where: str, expected: str = "a JSON object") -> dict[str, Any]:
    """Parse one line; `where` ("file:line") and `expected` ("a JSON object with id, text") go in errors."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{where}: not valid JSON ({exc.msg}); each line must be one JSON object") from None
    if not isinstance(obj, dict):
        raise HarnessError(f"{where}: expected {expected}")
    return obj


def read_objects(
    path: Path,
    expected: str = "a JSON object",
    *,
    torn_tail: Callable[[str], None] | None = None,
) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Yield (line number, "file:line", object) for each non-blank line of `path`.

    With `torn_tail`, a last line that has no newline and does not parse is reported to it and skipped."""
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]  # tolerate a BOM (Windows editors)
            unterminated = not raw.endswith(b"\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if torn_tail is not None and unterminated:
                    torn_tail(f"{where}: last line is incomplete (cut off while being written); ignored")
                    return
                raise HarnessError(f"{where}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
            if not text.strip():
                continue
            if torn_tail is not None and unterminated:
                try:
                    obj = parse_object(text, where, expected)
                except HarnessError:
                    torn_tail(f"{where}: last line is incomplete (cut off while being written); ignored")
                    return
            else:
                obj = parse_object(text, where, expected)
            yield lineno, where, obj
