"""`kind: path`: a file already on disk (relative paths are relative to the models file declaring them)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.models.registry import ModelEntry, PathSource, weights_path_problem
from harness.models.sources import hashing
from harness.models.sources.base import SourceKind, register


@register
class PathKind(SourceKind):
    kind = "path"

    def local_path(self, entry: ModelEntry) -> Path:
        assert isinstance(entry.source, PathSource)
        return Path(entry.source.path).expanduser()

    def describe(self, entry: ModelEntry) -> str:
        assert isinstance(entry.source, PathSource)
        return f"path: {entry.source.path}"

    def hub(self, entry: ModelEntry) -> str:
        return "local"

    def pull(self, entry: ModelEntry, *, offline: bool, progress: bool, pip_args: Sequence[str]) -> Path:
        assert isinstance(entry.source, PathSource)
        path = self.local_path(entry)
        problem = weights_path_problem(entry)  # also checked on loading; here for a path changed since
        if problem:
            raise HarnessError(problem)
        if not path.is_file():
            raise HarnessError(
                f'model "{entry.id}": file not found: {path}; fix source.path in models.yaml '
                f"(relative paths are relative to models.yaml's folder)"
            )
        hashing.verify(entry, path, entry.source.sha256, fix="fix source.sha256 or replace the file")
        return path
