"""The HTTP client is a module of its own (harness.http), not a backend: nothing outside harness/backends/ reaches
into the `openai` backend's module for it, harness.http imports no backend, and harness.env names no engine's
backend module. Checked on the source (ast), so a new import anywhere in harness/ is caught."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import harness

ROOT = Path(harness.__file__).resolve().parent
BACKEND_MODULE = "harness.backends.openai_http"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    return _imports_of(path.read_text(encoding="utf-8"), _module_name(path), path.name == "__init__.py")


def _imports_of(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, module) for every module `source` (the text of `module`) imports: relative imports resolved,
    `from pkg import mod` also as pkg.mod, and string constants passed to import_module."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = parts[: len(parts) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name == "import_module" and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def _sources(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "__pycache__" not in p.parts)


def test_the_scan_sees_every_form_of_import() -> None:
    """The checker itself: each way of naming the backend module is found (else the tests below prove nothing)."""
    forms = [
        "import harness.backends.openai_http",
        "from harness.backends.openai_http import EndpointConfig",
        "from harness.backends import openai_http",
        "from ..backends import openai_http",
        "from ..backends.openai_http import OpenAIHttpBackend",
        "importlib.import_module('harness.backends.openai_http')",
    ]
    for form in forms:
        assert BACKEND_MODULE in {m for _, m in _imports_of(form, "harness.servers.example")}, form
    assert BACKEND_MODULE not in {m for _, m in _imports_of("from harness.http import EndpointConfig", "harness.x")}


def test_nothing_outside_the_backends_imports_the_openai_backend_module() -> None:
    offenders = [
        f"{path.relative_to(ROOT.parent)}:{line}"
        for path in _sources(ROOT)
        if ROOT / "backends" not in path.parents
        for line, module in _imports(path)
        if module == BACKEND_MODULE
    ]
    assert offenders == [], f"import the HTTP client from harness.http instead: {offenders}"


def test_the_http_client_imports_no_backend() -> None:
    """harness.http may use the backend protocol's plain types (harness.backends.base), never a backend."""
    offenders = [
        f"{path.relative_to(ROOT.parent)}:{line}: {module}"
        for path in _sources(ROOT / "http")
        for line, module in _imports(path)
        if module.startswith("harness.backends.") and not module.startswith("harness.backends.base")
    ]
    assert offenders == []


def test_env_names_no_backend_module() -> None:
    """Engine probes come from each backend's `environment()`; env.py only iterates the registry."""
    modules = {module for _, module in _imports(ROOT / "env.py")}
    named = sorted(m for m in modules if m.startswith("harness.backends.") and m != "harness.backends.backends")
    assert named == [] and "harness.backends" in modules
