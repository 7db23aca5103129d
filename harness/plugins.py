"""What every plug-in registry shares: discovering a package's modules, and class references for workers.

A plug-in kind (backends, scenarios) is a package whose modules each define a subclass that registers
itself when its module is imported (the base class's `__init_subclass__`). `PluginPackage.discover` imports
every module of the package once; a module that fails to import is remembered, so that a lookup of a name
nobody registered can say which module may have held it. Worker processes receive a class as
`class_ref(cls)` ("module:QualName") and turn it back with `import_ref`, which also works for classes
outside the package (a test module's, a plugin's).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")

__all__ = ["PluginPackage", "class_path", "class_ref", "declared_name", "import_ref", "taken_by"]


class PluginPackage:
    """The modules of one plug-in package, imported on the first lookup."""

    def __init__(self, package: str, skip: tuple[str, ...] = ("base",)) -> None:
        self.package = package
        self.skip = skip
        self.broken: dict[str, str] = {}  # module -> why it could not be imported
        self._discovered = False

    def discover(self) -> None:
        """Import every module of the package once, so that each class in it registers itself."""
        if self._discovered:
            return
        self._discovered = True
        path = importlib.import_module(self.package).__path__
        for info in pkgutil.iter_modules(path):
            if info.name in self.skip:
                continue
            module = f"{self.package}.{info.name}"
            try:
                importlib.import_module(module)
            except ImportError as exc:  # a module that needs a missing package: only its plug-in is unavailable
                self.broken[module] = f"{type(exc).__name__}: {exc}"

    def with_broken(self, error: HarnessError) -> HarnessError:
        """`error` (an unknown name) with the modules that failed to import: the name may live in one."""
        if not self.broken:
            return error
        broken = "; ".join(f"{module} failed to import ({why})" for module, why in sorted(self.broken.items()))
        return HarnessError(f"{error} ({broken})")


def class_ref(cls: type) -> str:
    """An importable reference to a class, "module:QualName", for a worker process."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_ref(ref: str, base: type[T], kind: str) -> type[T]:
    """The `base` subclass that `ref` ("module:QualName") names; a HarnessError naming `kind` otherwise."""
    module_name, _, qualname = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise HarnessError(f"cannot import {kind} {ref}: {exc}") from None
    if not (isinstance(target, type) and issubclass(target, base)):
        raise HarnessError(f"{ref} is not a {base.__name__} subclass")
    return target


# --- registration (called from the base classes' __init_subclass__) ------------------------------------


def class_path(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def declared_name(cls: type) -> str | None:
    """The `name` that `cls` itself declares; None for an abstract intermediate class or a subclass that
    reuses its parent's name (neither registers). A TypeError when it is not a non-empty string."""
    if "name" not in cls.__dict__:
        return None
    name = cls.__dict__["name"]
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__}.name must be a non-empty string, got {name!r}")
    return name


def taken_by(
    registry: Mapping[str, type], value: str, names: Callable[[Any], Iterable[str | None]], cls: type
) -> type | None:
    """The registered class, other than `cls`, that answers to `value` (`names(c)` lists c's). The same
    class defined again (a re-import: same module and qualified name) is not another: it replaces itself."""
    for other in registry.values():
        if class_path(other) != class_path(cls) and value in names(other):
            return other
    return None
