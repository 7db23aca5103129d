"""A local inference server the harness starts, benchmarks over HTTP and stops (`harness run --via NAME`).

Why: "what does serving cost compared with in-process" needs the same weights, threads and context on both
paths, and the server process's own memory. The harness starts the server on a free loopback port with the
entry's weights and the run's threads/n_ctx, waits (bounded) until it answers, hands its endpoint to the
`openai` backend, and gives the server's pid to the trackers, so peak RSS is the server's.

A new server is one file in this package: subclass `ManagedServer`, set `name` (the --via value) and `kind`
(how the openai backend talks to it), and implement `command` (and `ready_path`, `prepare`, `stop` when the
server needs more than a process).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import httpx

from harness import safefs
from harness.errors import HarnessError
from harness.http import EndpointConfig, ServerKind
from harness.interrupts import exit_signal

REGISTERED: dict[str, type[ManagedServer]] = {}


@dataclass(frozen=True)
class ServerSettings:
    """What the server is started with: the entry's weights and the run's engine settings."""

    model_id: str
    weights: Path
    threads: int
    n_ctx: int
    log_path: Path  # the server's stdout+stderr (kept in the run directory)
    n_gpu_layers: int = 0
    flash_attn: bool = False
    repack: bool = True  # llama.cpp weight repacking (harness.backends.llama_cpp_repack)
    use_mmap: bool = True
    # Requests the server runs at once (its slots): the run's highest --concurrency level, so that a load level
    # of N measures N requests being served, not N-1 waiting in the server's queue. Each slot gets n_ctx.
    parallel: int = 1
    ready_timeout_s: float = 120.0
    request_timeout_s: float = 300.0


def exit_description(code: int | None) -> str:
    """'was killed by signal SIGSEGV' / 'exited with code 1' for a Popen return code."""
    name = exit_signal(code)
    return f"was killed by signal {name}" if name is not None else f"exited with code {code}"


def free_port() -> int:
    """A loopback port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ManagedServer(ABC):
    name: ClassVar[str]  # the --via value
    kind: ClassVar[ServerKind]  # how the openai backend talks to it
    install_hint: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            REGISTERED[cls.__dict__["name"]] = cls

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.ready_s: float | None = None  # start -> answering, seconds (the server's model load)
        self._log: object | None = None

    # -- what a server defines -------------------------------------------------------------------------
    @abstractmethod
    def command(self) -> list[str]:
        """The command line that serves the weights on 127.0.0.1:self.port."""

    @property
    def served_model(self) -> str:
        return self.settings.model_id

    @property
    def slots(self) -> int | None:
        """Requests the server runs at once, where its command fixes it (None = unknown): a load level above
        it only queues, and is marked not held (harness.load)."""
        return None

    @property
    def ready_path(self) -> str:
        return "/v1/models"

    @classmethod
    def preflight(cls) -> None:
        """Before the run starts: is the server installed here? Raise HarnessError naming the fix."""
        return None

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """Anything before the process starts. Raise HarnessError to refuse."""

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def endpoint(self) -> EndpointConfig:
        """The openai backend's flags for this server; the weights are also the prompt tokenizer."""
        return EndpointConfig(
            endpoint=self.url,
            served_model=self.served_model,
            tokenizer=str(self.settings.weights),
            server=self.kind,
            timeout_s=self.settings.request_timeout_s,
        )

    def start(self) -> float:
        """Start the server and wait until it answers; returns the seconds that took. HarnessError (with
        the end of the server's log) when it exits or does not answer within ready_timeout_s."""
        self.preflight()
        self.prepare()
        command = self.command()
        self.settings.log_path.parent.mkdir(parents=True, exist_ok=True)
        # The log lives in the run directory: opened without following a planted link (harness.safefs).
        log = os.fdopen(safefs.open_fd(self.settings.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb")
        self._log = log
        t0 = time.perf_counter()
        try:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.environment()
            )
        except OSError as exc:
            log.close()
            raise HarnessError(f"--via {self.name}: cannot start {command[0]} ({exc}); {self.install_hint}") from None
        self._wait_ready(t0)
        self.ready_s = time.perf_counter() - t0
        return self.ready_s

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def _wait_ready(self, t0: float) -> None:
        deadline = t0 + self.settings.ready_timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                assert self.process is not None
                code = self.process.poll()
                if code is not None:
                    raise HarnessError(
                        f"--via {self.name}: the server {exit_description(code)} before answering: {self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(self.url + self.ready_path).status_code == 200:
                        return
                if time.perf_counter() > deadline:
                    self.stop()
                    raise HarnessError(
                        f"--via {self.name}: no answer on {self.url} within {self.settings.ready_timeout_s:g} s "
                        f"(log {self.settings.log_path}: {self.log_tail()})"
                    )
                time.sleep(0.2)

    def log_tail(self, lines: int = 3) -> str:
        with contextlib.suppress(OSError):
            text = self.settings.log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            return " | ".join(line.strip() for line in text[-lines:]) or "(empty log)"
        return "(no log)"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Terminate (then kill) the server; idempotent."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()  # type: ignore[attr-defined]
            self._log = None


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on TCP `port` on this machine (psutil), or None: nothing listens, or
    the process is not visible to this user (another user's service, macOS without privileges)."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


def local_server_pid(url: str) -> int | None:
    """The pid serving `url` when its host is this machine (loopback or one of its names), else None."""
    parsed = httpx.URL(url)
    if parsed.host not in ("127.0.0.1", "localhost", "::1", "0.0.0.0", socket.gethostname()):
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return listening_pid(port)
