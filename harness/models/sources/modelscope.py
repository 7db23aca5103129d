"""`kind: modelscope`: a file in a ModelScope repo (Qwen publishes its GGUF builds there), fetched with
the optional `modelscope` package (harness[hubs]); $MODELSCOPE_ENDPOINT picks another site."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, redirect_stderr
from io import StringIO
from pathlib import Path

from harness.errors import HarnessError
from harness.models.registry import ModelEntry, ModelscopeSource
from harness.models.sources import hubs
from harness.models.sources.base import SourceKind, register


def file_download() -> Callable[..., str]:
    """The `modelscope` package's single-file download (an optional extra: harness[hubs])."""
    try:
        from modelscope.hub.file_download import model_file_download
    except ImportError:
        raise HarnessError(
            'ModelScope downloads need the modelscope package: pip install "harness[hubs]" '
            "(in a checkout: pip install -e '.[hubs]')"
        ) from None
    return model_file_download


@contextmanager
def _quiet_stderr(enabled: bool) -> Iterator[None]:
    """The modelscope client's tqdm bars and log lines go to stderr; drop them when no progress is wanted."""
    if not enabled:
        yield
        return
    with redirect_stderr(StringIO()):
        yield


@register
class ModelscopeKind(SourceKind):
    kind = "modelscope"
    downloads = True

    def describe(self, entry: ModelEntry) -> str:
        assert isinstance(entry.source, ModelscopeSource)
        return f"modelscope: {entry.source.repo}/{entry.source.filename}"

    def hub(self, entry: ModelEntry) -> str:
        endpoint = hubs.modelscope_endpoint()
        default = endpoint == hubs.MODELSCOPE_DEFAULT_ENDPOINT
        return "modelscope" if default else f"modelscope ({hubs.host(endpoint)})"

    def pull(self, entry: ModelEntry, *, offline: bool, progress: bool, pip_args: Sequence[str]) -> Path:
        source = entry.source
        assert isinstance(source, ModelscopeSource)
        endpoint = hubs.modelscope_endpoint()
        target = self.local_path(entry)

        def download(folder: Path) -> None:
            model_file_download = file_download()
            # Pass the endpoint only when the user chose one: left alone, the client picks between its
            # .cn and .ai sites itself.
            chosen = endpoint if endpoint != hubs.MODELSCOPE_DEFAULT_ENDPOINT else None
            with _quiet_stderr(not progress):
                got = Path(
                    model_file_download(
                        source.repo, source.filename, revision=source.revision, local_dir=str(folder), endpoint=chosen
                    )
                )
            if got.resolve() != target.resolve() and got.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(got, target)  # a client version that lays files out differently

        def classify(exc: BaseException) -> HarnessError | None:
            if isinstance(exc, HarnessError):
                return HarnessError(f'model "{entry.id}": {exc}')
            if type(exc).__name__ in {"NotExistError", "NotFoundError", "FileNotFoundError"}:
                return HarnessError(
                    f'model "{entry.id}": {source.repo}@{source.revision} has no file {source.filename} '
                    f"on ModelScope ({endpoint}); fix source.repo/filename/revision in models.yaml"
                )
            return None

        return hubs.fetch_from_hub(
            entry,
            source,
            hub_name="ModelScope",
            endpoint=endpoint,
            url=f"{endpoint}/models/{source.repo}/resolve/{source.revision}/{source.filename}",
            offline_reason="offline mode is on (--offline)" if offline else None,
            download=download,
            classify=classify,
        )
