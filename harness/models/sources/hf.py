"""`kind: hf`: a file in a Hugging Face hub repo, via huggingface_hub (from $HF_ENDPOINT when set)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from harness.env import harness_command
from harness.errors import HarnessError, ModelUnavailableError
from harness.models.registry import HfSource, ModelEntry
from harness.models.sources import diagnostics, hubs
from harness.models.sources.base import SourceKind, register


@contextmanager
def _hf_progress(enabled: bool) -> Iterator[None]:
    """huggingface_hub shows its own tqdm bar; silence it when the caller asked for no progress."""
    if enabled:
        yield
        return
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            enable_progress_bars()


@register
class HfKind(SourceKind):
    kind = "hf"
    downloads = True

    def describe(self, entry: ModelEntry) -> str:
        assert isinstance(entry.source, HfSource)
        return f"hf: {entry.source.repo}/{entry.source.filename}"

    def hub(self, entry: ModelEntry) -> str:
        endpoint = hubs.hf_endpoint()
        return "hf" if endpoint == hubs.HF_DEFAULT_ENDPOINT else f"hf ({hubs.host(endpoint)})"

    def pull(self, entry: ModelEntry, *, offline: bool, progress: bool, pip_args: Sequence[str]) -> Path:
        source = entry.source
        assert isinstance(source, HfSource)
        endpoint = hubs.hf_endpoint()
        offline_env = diagnostics.env_true("HF_HUB_OFFLINE")
        offline_reason = "offline mode is on (--offline or HF_HUB_OFFLINE)" if offline or offline_env else None

        def download(folder: Path) -> None:
            from huggingface_hub import hf_hub_download

            with _hf_progress(progress):
                # local_dir puts the file at <cache>/<id>/<filename>, exactly local_path(entry).
                hf_hub_download(
                    source.repo, source.filename, revision=source.revision, local_dir=folder, endpoint=endpoint
                )

        def classify(exc: BaseException) -> HarnessError | None:
            from huggingface_hub.errors import (
                GatedRepoError,
                RemoteEntryNotFoundError,
                RepositoryNotFoundError,
                RevisionNotFoundError,
            )

            if isinstance(exc, GatedRepoError):
                return ModelUnavailableError(
                    f'model "{entry.id}": {source.repo} is gated; accept its licence on huggingface.co, '
                    f"log in with `hf auth login`, then run `{harness_command()} models pull {entry.id}`"
                )
            if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError)):
                return HarnessError(
                    f'model "{entry.id}": {source.repo}@{source.revision} has no file {source.filename} '
                    f"on the Hugging Face hub ({endpoint}); fix source.repo/filename/revision in models.yaml"
                )
            return None

        return hubs.fetch_from_hub(
            entry,
            source,
            hub_name="Hugging Face",
            endpoint=endpoint,
            url=f"{endpoint}/{source.repo}/resolve/{source.revision}/{source.filename}",
            offline_reason=offline_reason,
            download=download,
            classify=classify,
        )
