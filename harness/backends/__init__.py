"""Backend registry: the models.yaml `backend:` names, each backend's `flags` and providers, all read from
the backend classes themselves.

A backend is one module in this package with one `Backend` subclass that sets `name`; defining the class
registers it (`Backend.__init_subclass__`), and the first lookup here imports every module of the package
so that each file registers itself. A subclass defined anywhere else (a test module, a plugin) registers
the same way once its module is imported.

Lazy: backend modules import their engines inside methods, so discovering names and flags costs no engine
import -- a run with llama.cpp models never imports onnxruntime, and `harness models` works without
either. `backend_class` imports what a backend `requires` and turns a missing package into a one-line
error for the models that use it.

Worker processes receive `backend_ref(cls)` ("module:QualName") and turn it back into the class with
`backend_class(ref)`, which also works for classes outside this package (e.g. a test module's backend).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from harness.backends.base import REGISTERED, Backend, BackendFlags
from harness.errors import HarnessError, suggest, unknown
from harness.plugins import PluginPackage, class_ref, import_ref

__all__ = [
    "Backend",
    "BackendFlags",
    "backend_class",
    "backend_names",
    "backend_ref",
    "backends",
    "check_provider",
    "find_backend",
    "flag_defaults",
    "make_flags",
]

_PACKAGE = PluginPackage(__name__)  # imported on the first lookup; remembers modules that failed


def backends() -> dict[str, type[Backend]]:
    """Every registered backend by name (no engine imported, no dependency checked)."""
    _PACKAGE.discover()
    return dict(sorted(REGISTERED.items()))


def backend_names() -> list[str]:
    return list(backends())


def find_backend(name: str) -> type[Backend]:
    """The class registered as `name`, without importing its engine; unknown names get "did you mean"."""
    known = backends()
    if name in known:
        return known[name]
    raise _PACKAGE.with_broken(unknown("backend", name, known))


def backend_ref(backend: type[Backend] | str) -> str:
    """An importable reference to a backend class, "module:QualName", for a worker process."""
    return class_ref(find_backend(backend) if isinstance(backend, str) else backend)


def backend_class(name_or_ref: str) -> type[Backend]:
    """The backend class for a registered name or a `backend_ref`, with its required modules imported.

    Raises HarnessError naming the package to install when one of `requires` is missing.
    """
    cls = import_ref(name_or_ref, Backend, "backend") if ":" in name_or_ref else find_backend(name_or_ref)
    for module, requirement in cls.requires.items():
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise HarnessError(
                f'backend "{cls.name}" needs {module} ({exc}); install it with pip install "{requirement}"'
            ) from None
    return cls


# --- flags ---------------------------------------------------------------------------------------


@functools.cache
def _flag_adapters(flags_type: type[BackendFlags]) -> dict[str, TypeAdapter[Any]]:
    hints = typing.get_type_hints(flags_type, include_extras=True)
    return {f.name: TypeAdapter(hints[f.name]) for f in dataclasses.fields(flags_type)}


def flag_defaults(cls: type[Backend]) -> dict[str, Any]:
    """The flags `cls` accepts, with their defaults (for docs and messages)."""
    return dataclasses.asdict(cls.flags_type())


def _check_flag(cls: type[Backend], key: str, value: Any, where: str) -> Any:
    try:
        return _flag_adapters(cls.flags_type)[key].validate_python(value, strict=True)
    except ValidationError as exc:
        why = exc.errors()[0]["msg"].rstrip(".").lower()
        raise HarnessError(f'{where}flag "{key}" of backend {cls.name}: {why}, got {value!r}') from None


def make_flags(
    cls: type[Backend],
    values: Mapping[str, Any],
    *,
    where: str = "",
    overrides: Mapping[str, Any] | None = None,
) -> BackendFlags:
    """`cls.flags_type` built from models.yaml `flags` (`values`), then `overrides` (CLI options).

    An unknown key or a value of the wrong type in `values` is a HarnessError naming `where` (e.g.
    'model "x": '), the flag and the allowed ones. `overrides` set only flags this backend declares and
    skip None (not given); the caller decides whether an option for another backend is an error.
    """
    allowed = _flag_adapters(cls.flags_type)
    for key in values:
        if key not in allowed:
            if not allowed:
                raise HarnessError(f'{where}unknown flag "{key}": backend {cls.name} takes no flags')
            raise HarnessError(
                f'{where}unknown flag "{key}" for backend {cls.name}.{suggest(key, allowed)} '
                f"Allowed: {', '.join(sorted(allowed))}"
            )
    checked = {key: _check_flag(cls, key, value, where) for key, value in values.items()}
    for key, value in (overrides or {}).items():
        if key in allowed and value is not None:
            checked[key] = _check_flag(cls, key, value, "command line: ")
    return cls.flags_type(**checked)


def check_provider(
    cls: type[Backend], provider: str | None, provider_options: Mapping[str, Any], *, where: str = ""
) -> None:
    """Refuse an execution provider (or provider_options) that `cls` cannot take: a provider other than
    "auto" on a backend without providers, or a name the backend does not know."""
    requested = (provider or "auto").strip().lower()
    if not cls.providers:
        takes = ", ".join(name for name, other in backends().items() if other.providers) or "none"
        if requested != "auto":
            raise HarnessError(
                f'{where}backend {cls.name} has no execution providers, so provider "{provider}" cannot apply '
                f"(backends with providers: {takes})"
            )
        if provider_options:
            raise HarnessError(
                f"{where}backend {cls.name} takes no provider_options (backends with providers: {takes})"
            )
        return
    if requested != "auto" and requested not in cls.providers:
        error = unknown("execution provider", requested, [*cls.providers, "auto"])
        raise HarnessError(f"{where}{error}")
