"""The documentation holds together: the README stays a front door, docs/README.md indexes every page, every
relative link (and its #anchor) resolves, and the generated tables match the code they come from.

The examples on the pages are run by tests/test_readme_examples.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
INDEX = DOCS / "README.md"
PAGES = [README, *sorted(DOCS.glob("*.md"))]

# Pages other work adds: the index links them before they land. A link to one of these that does not exist yet
# is tolerated; once the page exists, links into it (anchors included) are checked like any other. Empty it when
# they have landed.
PENDING: set[str] = set()

_spec = importlib.util.spec_from_file_location("docs_tables", REPO / "tools" / "docs_tables.py")
assert _spec and _spec.loader
docs_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(docs_tables)


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks (a `#` in a bash block is a comment, not a heading)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation removed, spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = text.replace("`", "").strip().lower()
    text = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(page.read_text(encoding="utf-8")):
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")  # GitHub numbers repeated headings
        found.update(re.findall(r'<a id="([^"]+)"', line))
    return found


def links(page: Path) -> list[str]:
    """Relative link targets of a page (web links, mail links left out)."""
    targets = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        for target in re.findall(r"\]\(([^)\s]+)\)", line):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):
                targets.append(target)
    return targets


def test_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into a docs/ page"
    # The two first commands, verbatim near the top (CI's .ci/run runs the test one).
    head = "\n".join(lines[:25])
    assert "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python -m harness run" in head
    test_command = (
        "python3 -m venv .venv && .venv/bin/pip install -e '.[test,onnx-build]' && .venv/bin/python -m pytest"
    )
    assert test_command in head
    assert test_command in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    for section in ("## Quickstart", "## Troubleshooting"):
        assert section in lines, section
    assert "docs/README.md" in README.read_text(encoding="utf-8")


def test_index_lists_every_page() -> None:
    listed = {Path(t.split("#")[0]).name for t in links(INDEX)}
    missing = [p.name for p in sorted(DOCS.glob("*.md")) if p != INDEX and p.name not in listed]
    assert not missing, f"docs/README.md does not link {missing}; add one line per page to its table"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for target in links(page):
        path_part, _, anchor = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            if dest.name in PENDING and dest.parent == DOCS:
                continue
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading or <a id> '{anchor}' in {dest.relative_to(REPO)}")
    assert not broken, broken


def test_slug_follows_github() -> None:
    assert slug("Options of `harness run`") == "options-of-harness-run"
    assert slug("A server the harness starts (`--via`)") == "a-server-the-harness-starts---via"
    assert slug("run.json") == "runjson"
    assert slug("Serving cost, measured here") == "serving-cost-measured-here"


def test_generated_tables_are_current() -> None:
    assert docs_tables.stale() == [], "regenerate with: .venv/bin/python tools/docs_tables.py"
    # Each generated table is on exactly one page, so there is one place to read (and regenerate) it.
    where: dict[str, list[str]] = {}
    for page in PAGES:
        for name, _ in docs_tables.blocks(page.read_text(encoding="utf-8")):
            where.setdefault(name, []).append(page.name)
    assert {name: len(pages) for name, pages in where.items()} == {name: 1 for name in docs_tables.GENERATORS}


def test_docs_tables_tool_rewrites_a_stale_block() -> None:
    stale = "intro\n<!-- columns:start (generated) -->\n| old |\n<!-- columns:end -->\nafter\n"
    new = docs_tables.regenerate(stale)
    assert new.startswith("intro\n<!-- columns:start (generated) -->\n| column |")
    assert new.endswith("\n<!-- columns:end -->\nafter\n")
    assert "| old |" not in new
    assert docs_tables.regenerate(new) == new


def test_docs_site_builds_offline(tmp_path: Path) -> None:
    """mkdocs.yml: docs/ as a static site with a search index, built with no network (theme and search are
    mkdocs' own)."""
    pytest.importorskip("mkdocs", reason="the docs site needs mkdocs (pip install mkdocs)")
    site = tmp_path / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = json.loads((site / "search" / "search_index.json").read_text(encoding="utf-8"))
    searched = {doc["location"].split("#")[0] for doc in index["docs"]}
    pages = [p for p in sorted(DOCS.glob("*.md")) if p != INDEX]
    assert [p.name for p in pages if f"{p.stem}/" not in searched] == []
