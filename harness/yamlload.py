"""Reading the harness's YAML files (models.yaml, registered.yaml, the corpus references) strictly.

Why not plain `yaml.safe_load`:

- Aliases (`*name`) are refused. safe_load resolves them as shared references, so a "billion laughs"
  (an anchor of 10 aliases of an anchor of 10 aliases ..., 9 levels) is a few hundred bytes of YAML that
  becomes 10^9 strings the moment anything copies it -- `json.dumps` of run.json, pydantic validation.
  None of the harness's files needs them; an entry is written out in full.
- A key that appears twice in one mapping is refused (safe_load keeps the last one silently, so a
  second `n_ctx:` further down an entry would quietly win).
- Bytes that are not UTF-8 are one line naming the file, not a UnicodeDecodeError.

Every problem is a one-line `HarnessError` naming the file and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from harness.errors import HarnessError

MERGE_TAG = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases and without duplicate keys."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"alias *{event.anchor} is not allowed (write the value out in full)", event.start_mark
            )
        return super().compose_node(parent, index)  # type: ignore[arg-type]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[no-untyped-call]
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeConstructor reports it
                continue
            if duplicate:
                raise ConstructorError(
                    "while reading a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


def first_line(exc: yaml.YAMLError) -> str:
    """A YAML error as one line: the problem and where it is (`line N, column M`)."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(exc).split())[:160]


def loads(text: str, where: str | Path) -> Any:
    """Parse YAML text with `StrictLoader`; errors are one line naming `where`."""
    from harness.jsonl import lone_surrogate

    try:
        data = yaml.load(text, Loader=StrictLoader)  # StrictLoader is a SafeLoader: no Python tags
    except yaml.YAMLError as exc:
        raise HarnessError(f"{where}: not valid YAML ({first_line(exc)})") from None
    except RecursionError:
        raise HarnessError(f"{where}: not valid YAML (nested too deeply)") from None
    if lone_surrogate(data) is not None:  # a "\ud800" escape: not text, and it cannot be written to run.json
        raise HarnessError(f"{where}: a string holds a lone surrogate (a \\ud800-\\udfff escape); remove it")
    return data


def load_file(path: Path) -> Any:
    """Read and parse a YAML file: not readable, not UTF-8 or not valid YAML is one line naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise HarnessError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise HarnessError(f"{path}:{line}: not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
    return loads(text, path)


__all__ = ["StrictLoader", "first_line", "load_file", "loads"]
