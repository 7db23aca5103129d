"""`--via llama-cpp-server`: llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`).

Same llama.cpp build, same Python package as the in-process backend, so the difference between the two paths is
serving: HTTP, JSON, uvicorn's event loop and llama-cpp-python's streaming loop. Started from this interpreter
(the `server` extra: pip install 'harness[server]').

The chat format is pinned to the GGUF's own template (`chat_template.default`), as in-process: left alone,
llama-cpp-python replaces a template it recognises (ChatML, Llama 3) with its hand-written formatter, whose
prompt can differ by a few tokens.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import ClassVar

from harness.errors import HarnessError
from harness.http import ServerKind
from harness.servers.base import ManagedServer


class LlamaCppPythonServer(ManagedServer):
    name: ClassVar[str] = "llama-cpp-server"
    kind: ClassVar[ServerKind] = "llama-cpp-python"
    install_hint: ClassVar[str] = "install it with pip install 'harness[server]'"

    @classmethod
    def preflight(cls) -> None:
        missing = [m for m in ("uvicorn", "fastapi", "sse_starlette", "pydantic_settings") if not _importable(m)]
        if missing:
            raise HarnessError(f"--via {cls.name} needs {', '.join(missing)}; {cls.install_hint}")

    @property
    def slots(self) -> int:
        """llama-cpp-python's server runs one request at a time and queues the rest."""
        return 1

    def command(self) -> list[str]:
        s = self.settings
        return [
            # Through a launcher that sets llama.cpp's repack switch, which llama-cpp-python's server settings
            # do not expose (harness.servers.llama_cpp_server_main); the rest are the server's own flags.
            sys.executable, "-m", "harness.servers.llama_cpp_server_main", "--repack", "1" if s.repack else "0",
            "--model", str(s.weights),
            "--model_alias", s.model_id,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(s.n_ctx),
            "--n_threads", str(s.threads),
            "--n_threads_batch", str(s.threads),
            "--n_gpu_layers", str(s.n_gpu_layers),
            "--flash_attn", str(s.flash_attn),
            "--use_mmap", str(s.use_mmap),
            "--chat_format", "chat_template.default",
            "--seed", "0",
            # Its default cuts the running stream when another request arrives; queue them (load levels).
            "--interrupt_requests", "False",
            "--verbose", "True",  # per-request llama.cpp timings and prefix-match lines in the server log
        ]  # fmt: skip


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
