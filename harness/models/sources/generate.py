"""`kind: generate`: a model written locally at first use (tiny random-weight models for smoke tests)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from harness import safefs
from harness.errors import unknown
from harness.models.registry import GenerateSource, ModelEntry
from harness.models.sources import cache, hashing
from harness.models.sources.base import SourceKind, register


@register
class GenerateKind(SourceKind):
    kind = "generate"

    def describe(self, entry: ModelEntry) -> str:
        assert isinstance(entry.source, GenerateSource)
        return f"generate: {entry.source.generator}"

    def hub(self, entry: ModelEntry) -> str:
        return "generated"

    def pull(self, entry: ModelEntry, *, offline: bool, progress: bool, pip_args: Sequence[str]) -> Path:
        from harness.models.generators import GENERATORS  # numpy/gguf only when generating

        source = entry.source
        assert isinstance(source, GenerateSource)
        path = self.local_path(entry)
        if self.is_ready(entry):
            return path
        if source.generator not in GENERATORS:
            raise unknown("generator", source.generator, GENERATORS)
        generator = GENERATORS[source.generator]
        partial = path.with_name(path.name + ".partial")
        with cache.model_dir(entry):
            for target in (path, hashing.marker(path)):  # a planted link at the cache entry: refused (safefs)
                safefs.check_target(target)
            try:
                os.close(safefs.replace_new(partial))  # the generator then writes a regular file we created
                generator(partial)
                sha256 = hashing.file_sha256(partial)
                os.replace(partial, path)
                # Recorded after the rename: a rename moves the file's ctime, which the record checks.
                hashing.write_marker(path, sha256)
            finally:
                partial.unlink(missing_ok=True)
        return path
