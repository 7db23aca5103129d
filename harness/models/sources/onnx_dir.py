"""`kind: onnx_dir`: an onnxruntime-genai model folder (made by `harness prepare onnx` or by the user)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.env import harness_command
from harness.errors import ModelUnavailableError
from harness.models.registry import ModelEntry, OnnxSource
from harness.models.sources.base import SourceKind, register

ONNX_MARKER = "genai_config.json"  # what makes a folder an onnxruntime-genai model


@register
class OnnxDirKind(SourceKind):
    kind = "onnx_dir"

    def local_path(self, entry: ModelEntry) -> Path:
        assert isinstance(entry.source, OnnxSource)
        return Path(entry.source.path).expanduser()

    def is_ready(self, entry: ModelEntry) -> bool:
        return (self.local_path(entry) / ONNX_MARKER).is_file()

    def describe(self, entry: ModelEntry) -> str:
        assert isinstance(entry.source, OnnxSource)
        return f"onnx_dir: {entry.source.path}"

    def hub(self, entry: ModelEntry) -> str:
        return "local"

    def pull(self, entry: ModelEntry, *, offline: bool, progress: bool, pip_args: Sequence[str]) -> Path:
        path = self.local_path(entry)
        if not self.is_ready(entry):
            raise ModelUnavailableError(
                f'model "{entry.id}": no onnxruntime-genai model at {path} (needs {ONNX_MARKER}); '
                f"build one with `{harness_command()} prepare onnx` or fix source.path"
            )
        return path
