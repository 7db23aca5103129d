"""JSON Lines input shared by corpus files, score inputs and run summaries: one object per line, and a
malformed line is a one-line error naming `file:line`."""

from __future__ import annotations

import json
from collections.abc import Iterator
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


def read_objects(path: Path, expected: str = "a JSON object") -> Iterator[tuple[int, str, dict[str, Any]]]:
    """Yield (line number, "file:line", object) for each non-blank line of `path`."""
    try:
        with path.open(encoding="utf-8-sig") as fh:  # tolerate a BOM (Windows editors)
            for lineno, raw in enumerate(fh, start=1):
                if raw.strip():
                    where = f"{path}:{lineno}"
                    yield lineno, where, parse_object(raw, where, expected)
    except UnicodeDecodeError as exc:
        raise HarnessError(f"{path}: not UTF-8 text ({exc.reason}); save the JSONL as UTF-8") from None
