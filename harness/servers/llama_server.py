"""`--via llama-server`: llama.cpp's own C++ server: the one `harness tools build` built from the installed
llama-cpp-python's vendored sources (the in-process engine's exact commit; harness.crosscheck.build), else a
`llama-server` on PATH (a llama.cpp release or your build). tests/test_llama_server_real.py runs it for real;
the request side is also tested against recorded llama-server streams.

Slots: `--parallel N` with N = the run's highest --concurrency level (1 without load levels), and
`--ctx-size N x n_ctx`, because llama-server splits its context evenly between slots: each request gets the
entry's whole n_ctx, as in-process. The KV cache is then N times the in-process one (memory columns).

llama-server reports its own counters per request (`timings`: prompt_n/prompt_ms, predicted_n/predicted_ms),
so the rows get engine_* columns and the HTTP + server overhead as decode_vs_engine_pct; requests carry
`cache_prompt: false` and the evaluated-prompt count is checked.
"""

from __future__ import annotations

from typing import ClassVar

from harness.crosscheck.build import build_hint, find_tool
from harness.errors import HarnessError
from harness.http import ServerKind
from harness.servers.base import ManagedServer


class LlamaServer(ManagedServer):
    name: ClassVar[str] = "llama-server"
    kind: ClassVar[ServerKind] = "llama-server"
    install_hint: ClassVar[str] = (
        f"{build_hint()}, or put llama.cpp's llama-server on PATH (a release from github.com/ggml-org/llama.cpp)"
    )

    @property
    def ready_path(self) -> str:
        return "/health"  # 503 while the model loads, 200 once it serves

    @property
    def slots(self) -> int:
        return max(1, self.settings.parallel)

    @classmethod
    def preflight(cls) -> None:
        if find_tool("llama-server") is None:
            raise HarnessError(f"--via {cls.name}: no llama-server on PATH (none built either); {cls.install_hint}")

    def command(self) -> list[str]:
        s = self.settings
        binary = find_tool("llama-server")
        parallel = self.slots
        command = [
            str(binary) if binary is not None else "llama-server",
            "--model", str(s.weights),
            "--alias", s.model_id,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--ctx-size", str(s.n_ctx * parallel),  # split evenly: n_ctx per slot
            "--threads", str(s.threads),
            "--threads-batch", str(s.threads),
            "--n-gpu-layers", str(s.n_gpu_layers),
            "--flash-attn", "on" if s.flash_attn else "off",
            "--repack" if s.repack else "--no-repack",  # llama.cpp weight repacking (CPU extra buffer types)
            "--parallel", str(parallel),
            "--seed", "0",
            "--jinja",  # the GGUF's own chat template
        ]  # fmt: skip
        if not s.use_mmap:
            command.append("--no-mmap")
        return command
