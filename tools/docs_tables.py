"""Regenerate (or check) the generated tables in README.md and docs/*.md.

A generated table sits between two markers, e.g.

    <!-- columns:start (generated: .venv/bin/python tools/docs_tables.py) -->
    | column | unit | ...
    <!-- columns:end -->

and its text comes from the code's own tables (`GENERATORS`), so a new option or column is documented by
running this tool, and a stale table fails `tests/test_docs.py`:

    .venv/bin/python tools/docs_tables.py           # rewrite every stale block in place
    .venv/bin/python tools/docs_tables.py --check   # exit 1 naming the stale blocks, change nothing
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from a checkout, the package not necessarily installed


def _options() -> str:
    from harness.params import describe

    return describe()


def _columns() -> str:
    from harness.results.schema import describe

    return describe()


# block name -> the text between its markers
GENERATORS: dict[str, Callable[[], str]] = {"options": _options, "columns": _columns}

_BLOCK = re.compile(r"(<!-- (?P<name>[\w-]+):start[^\n]*-->\n)(?P<body>.*?)(<!-- (?P=name):end -->)", re.S)


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(text: str) -> list[tuple[str, str]]:
    """(name, body) of every generated block in a page, body stripped."""
    return [(m.group("name"), m.group("body").strip()) for m in _BLOCK.finditer(text)]


def regenerate(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        gen = GENERATORS.get(m.group("name"))
        if gen is None:  # a marker this tool does not know stays as written
            return m.group(0)
        return f"{m.group(1)}{gen().strip()}\n{m.group(4)}"

    return _BLOCK.sub(one, text)


def stale(files: list[Path] | None = None) -> list[str]:
    """`file: block` for each generated block whose text differs from what the code generates now."""
    out = []
    for path in files or doc_files():
        text = path.read_text(encoding="utf-8")
        for name, body in blocks(text):
            if name in GENERATORS and body != GENERATORS[name]().strip():
                out.append(f"{path.relative_to(REPO)}: {name}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="report stale blocks, change nothing")
    args = parser.parse_args(argv)
    found = stale()
    if args.check:
        for line in found:
            print(f"stale generated table: {line} (fix: .venv/bin/python tools/docs_tables.py)", file=sys.stderr)
        return 1 if found else 0
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        new = regenerate(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
