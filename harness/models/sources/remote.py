"""`kind: remote`: no local weights; the model lives on a server a backend reaches over HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.models.registry import ModelEntry
from harness.models.sources.base import SourceKind, register


@register
class RemoteKind(SourceKind):
    kind = "remote"

    def local_path(self, entry: ModelEntry) -> Path:
        # Callers ask `is_ready` first (always False here): there is no file to point at.
        raise HarnessError(f'model "{entry.id}" is served remotely (source kind remote): it has no local file')

    def is_ready(self, entry: ModelEntry) -> bool:
        return False  # nothing local to be ready

    def describe(self, entry: ModelEntry) -> str:
        return f"remote: served_model {entry.flags.get('served_model') or '?'} (no local weights)"

    def hub(self, entry: ModelEntry) -> str:
        return f"remote: {entry.flags.get('endpoint') or '?'}"

    def pull(self, entry: ModelEntry, *, offline: bool, progress: bool, pip_args: Sequence[str]) -> None:
        return None
