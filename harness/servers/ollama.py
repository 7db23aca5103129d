"""`--via ollama`: a running ollama daemon serves the entry's GGUF, registered with `ollama create`.

Untested in CI (no ollama here); the request side is tested against recorded ollama streams. The harness
does not start the daemon (`ollama serve`, usually a system service): it registers the weights as
`harness-<model id>` from a Modelfile (FROM <gguf>, num_ctx, num_thread, temperature 0), benchmarks through
ollama's native /api/chat (whose final line carries prompt_eval_count/eval_count and their durations: the
engine_* columns), and unloads the model at the end (`ollama stop`).

Memory: ollama runs each model in a separate runner process, a child of the daemon; the tracker watches the
process that listens on ollama's port (the daemon), so pass --server-pid with the runner's pid (`ps`) for
the model's own memory. ollama has no switch for its prompt cache: a repeat whose evaluated-prompt count
drops below the first sample's is an error row.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import ClassVar

import httpx

from harness import safefs
from harness.errors import HarnessError
from harness.http import ServerKind
from harness.servers.base import ManagedServer, listening_pid

DEFAULT_HOST = "127.0.0.1:11434"


def ollama_host() -> str:
    """host:port of the ollama daemon: $OLLAMA_HOST (as ollama itself reads it) or its default."""
    return os.environ.get("OLLAMA_HOST", DEFAULT_HOST).removeprefix("http://")


class OllamaServer(ManagedServer):
    name: ClassVar[str] = "ollama"
    kind: ClassVar[ServerKind] = "ollama"
    install_hint: ClassVar[str] = "install ollama (ollama.com) and start its daemon (`ollama serve`)"

    @property
    def host(self) -> str:
        return ollama_host()

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def served_model(self) -> str:
        return f"harness-{self.settings.model_id}".lower()

    @property
    def ready_path(self) -> str:
        return "/api/version"

    @classmethod
    def preflight(cls) -> None:
        if shutil.which("ollama") is None:
            raise HarnessError(f"--via {cls.name}: no ollama on PATH; {cls.install_hint}")
        url = f"http://{ollama_host()}"
        try:
            httpx.get(url + "/api/version", timeout=3.0).raise_for_status()
        except httpx.HTTPError:
            raise HarnessError(f"--via {cls.name}: no ollama daemon answers on {url}; {cls.install_hint}") from None

    def prepare(self) -> None:
        s = self.settings
        modelfile = s.log_path.with_suffix(".Modelfile")
        modelfile.parent.mkdir(parents=True, exist_ok=True)
        safefs.write_atomic(  # in the run directory: never through a planted link
            modelfile,
            f"FROM {s.weights}\nPARAMETER num_ctx {s.n_ctx}\nPARAMETER num_thread {s.threads}\n"
            "PARAMETER temperature 0\nPARAMETER seed 0\n",
        )
        done = subprocess.run(
            ["ollama", "create", self.served_model, "-f", str(modelfile)], capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            raise HarnessError(f"--via {self.name}: ollama create failed: {done.stderr.strip()[-300:]}")

    def command(self) -> list[str]:
        return []  # the daemon is already running; start() loads the model through its API instead

    def start(self) -> float:
        """Register the GGUF, then load it (an empty /api/generate request loads a model and keeps it)."""
        self.preflight()
        self.prepare()
        t0 = time.perf_counter()
        body = {"model": self.served_model, "prompt": "", "keep_alive": "60m"}
        try:
            response = httpx.post(self.url + "/api/generate", json=body, timeout=self.settings.ready_timeout_s)
        except httpx.HTTPError as exc:
            raise HarnessError(f"--via {self.name}: loading {self.served_model} failed: {exc}") from None
        if response.status_code >= 400:
            raise HarnessError(f"--via {self.name}: loading {self.served_model} failed: {response.text[:300]}")
        self.ready_s = time.perf_counter() - t0
        return self.ready_s

    @property
    def pid(self) -> int | None:
        port = int(self.host.rpartition(":")[2] or 11434)
        return listening_pid(port)

    @property
    def alive(self) -> bool:
        return self.pid is not None

    def stop(self) -> None:
        subprocess.run(["ollama", "stop", self.served_model], capture_output=True, timeout=60)
