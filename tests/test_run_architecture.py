"""The run's structure, as docs/architecture.md states it: checked on the source, so it cannot drift back.

- harness/run/runner.py is orchestration only: at most 300 lines, and it imports no backend, scenario,
  tracker or server module (those are reached through the stage modules and registries);
- one `PlannedSample` type in the package;
- run.json is changed only by harness/run/record.py's RecordBuilder: no other module of the run or the fleet
  writes into a `record` dict (subscript assignment, update, setdefault, pop).
"""

from __future__ import annotations

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).parent
RUNNER = PACKAGE / "run" / "runner.py"
PLUG_INS = (
    "harness.backends", "harness.scenarios", "harness.trackers", "harness.servers", "harness.serving", "harness.load",
)  # fmt: skip


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _imported_modules(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_runner_is_orchestration_only() -> None:
    lines = RUNNER.read_text(encoding="utf-8").count("\n")
    assert lines <= 300, f"harness/run/runner.py has {lines} lines; move a stage into its own module"
    imported = _imported_modules(_tree(RUNNER))
    named = sorted(m for m in imported for p in PLUG_INS if m == p or m.startswith(p + "."))
    assert named == [], f"the runner names plug-in modules: {named}"


def test_one_planned_sample_type() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.ClassDef) and node.name == "PlannedSample"
    ]
    assert found == ["harness/run/plan.py:" + found[0].rsplit(":", 1)[1]] and len(found) == 1, found


def _is_record(node: ast.AST) -> bool:
    """`record` or `<anything>.record`: the names the run's record went by when it was a dict."""
    return (isinstance(node, ast.Name) and node.id == "record") or (
        isinstance(node, ast.Attribute) and node.attr == "record"
    )


def _record_writes(path: Path) -> list[str]:
    out: list[str] = []
    for node in ast.walk(_tree(path)):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if isinstance(target, ast.Subscript) and _is_record(target.value):
                out.append(f"{path.name}:{node.lineno} assigns into a record dict")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("update", "setdefault", "pop")
            and _is_record(node.func.value)
        ):
            out.append(f"{path.name}:{node.lineno} calls record.{node.func.attr}")
    return out


def test_run_json_is_built_only_by_the_record_builder() -> None:
    modules = [p for p in (PACKAGE / "run").glob("*.py") if p.name != "record.py"]
    modules += list((PACKAGE / "fleet").glob("*.py"))
    writes = [w for path in sorted(modules) for w in _record_writes(path)]
    assert writes == [], "run.json must change only through harness/run/record.py's RecordBuilder: " + "; ".join(writes)


def test_the_checker_sees_a_dict_write(tmp_path: Path) -> None:
    """The check above can fail: a module that writes into a record dict is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text('def f(self):\n    self.record["status"] = "done"\n    record.update(x=1)\n', encoding="utf-8")
    assert len(_record_writes(bad)) == 2
