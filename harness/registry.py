"""Name lookup with "did you mean" suggestions, shared by models, backends, metrics and providers."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


def suggest(name: str, choices: Iterable[str]) -> str:
    """Return ' Did you mean "x"?' for the closest choice, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f' Did you mean "{close[0]}"?' if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> HarnessError:
    choices = sorted(choices)
    return HarnessError(f'unknown {kind} "{name}".{suggest(name, choices)} Known: {", ".join(choices)}')


class Registry(Generic[T], Mapping[str, T]):
    """A read-only name -> item mapping whose failed lookups name the closest match."""

    def __init__(self, kind: str, items: Mapping[str, T] | None = None) -> None:
        self.kind = kind
        self._items: dict[str, T] = dict(items or {})

    def register(self, name: str, item: T) -> None:
        self._items[name] = item

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise unknown(self.kind, name, self._items) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)
