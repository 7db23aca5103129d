"""`--via llama-server`: llama.cpp's own C++ server, a `llama-server` binary on PATH (a llama.cpp release or
your build). Untested in CI (no binary here); the request side is tested against recorded llama-server streams.

llama-server reports its own counters per request (`timings`: prompt_n/prompt_ms, predicted_n/predicted_ms),
so the rows get engine_* columns and the HTTP + server overhead as decode_vs_engine_pct; requests carry
`cache_prompt: false` and the evaluated-prompt count is checked.
"""

from __future__ import annotations

import shutil
from typing import ClassVar

from harness.backends.openai_http import ServerKind
from harness.errors import HarnessError
from harness.servers.base import ManagedServer


class LlamaServer(ManagedServer):
    name: ClassVar[str] = "llama-server"
    kind: ClassVar[ServerKind] = "llama-server"
    install_hint: ClassVar[str] = "put llama.cpp's llama-server on PATH (a release from github.com/ggml-org/llama.cpp)"

    @property
    def ready_path(self) -> str:
        return "/health"  # 503 while the model loads, 200 once it serves

    @classmethod
    def preflight(cls) -> None:
        if shutil.which("llama-server") is None:
            raise HarnessError(f"--via {cls.name}: no llama-server on PATH; {cls.install_hint}")

    def command(self) -> list[str]:
        s = self.settings
        command = [
            "llama-server",
            "--model", str(s.weights),
            "--alias", s.model_id,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--ctx-size", str(s.n_ctx),
            "--threads", str(s.threads),
            "--threads-batch", str(s.threads),
            "--n-gpu-layers", str(s.n_gpu_layers),
            "--flash-attn", "on" if s.flash_attn else "off",
            "--parallel", "1",  # one slot: the whole n_ctx per request, as in-process
            "--seed", "0",
            "--jinja",  # the GGUF's own chat template
        ]  # fmt: skip
        if not s.use_mmap:
            command.append("--no-mmap")
        return command
