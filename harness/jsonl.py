"""JSON Lines input shared by corpus files, score inputs and run summaries: one object per line, and a
malformed line (bad JSON, not UTF-8) is a one-line error naming `file:line`.

A run's own summaries.jsonl may end in a torn line when the run was killed while writing it (see
`harness.results.durable`); readers of run output pass `torn_tail` to skip that last line with a warning
instead of refusing the whole file. User input (a corpus, a score file) stays strict.
"""

from __future__ import annotations

import codecs
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness.errors import HarnessError


def loads_document(text: str, where: str, fix: str = "each line must be one JSON object") -> Any:
    """json.loads with every way it can fail as one line naming `where`: bad syntax (JSONDecodeError), an
    integer over Python's digit limit (ValueError, 4300 digits by default), nesting deeper than the
    interpreter's recursion limit (RecursionError), and strings holding lone surrogates (`"\\ud800"`),
    which no UTF-8 file, terminal or CSV can hold."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        at = f", line {exc.lineno}" if "\n" in text.rstrip("\n") else ""
        raise HarnessError(f"{where}: not valid JSON ({exc.msg}{at}); {fix}") from None
    except ValueError as exc:  # int('9' * 5000): "Exceeds the limit (4300 digits) for integer string conversion"
        limit = getattr(sys, "get_int_max_str_digits", lambda: 4300)()
        why = f"an integer longer than {limit} digits" if "integer" in str(exc) else str(exc).splitlines()[0][:80]
        raise HarnessError(f"{where}: not usable JSON ({why}); {fix}") from None
    except RecursionError:
        raise HarnessError(f"{where}: not usable JSON (nested too deeply for the parser); {fix}") from None
    bad = lone_surrogate(obj)
    if bad is not None:
        raise HarnessError(
            f"{where}: a string holds a lone surrogate ({_escape_surrogates(bad)}), which is not Unicode text; "
            "remove the \\ud800-\\udfff escape"
        )
    return obj


def _escape_surrogates(text: str) -> str:
    return next((f"\\u{ord(c):04x}" for c in text if "\ud800" <= c <= "\udfff"), "")


def lone_surrogate(obj: Any) -> str | None:
    """The first key or string in a parsed JSON value that holds a lone surrogate, else None. Iterative:
    the value may be as deep as the parser allowed."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def parse_object(raw: str, where: str, expected: str = "a JSON object") -> dict[str, Any]:
    """Parse one line; `where` ("file:line") and `expected` ("a JSON object with id, text") go in errors."""
    obj = loads_document(raw, where)
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
