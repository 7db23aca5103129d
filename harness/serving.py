"""The run's serving options in one place: `--via` (a managed local server per model), `--server-pid` (whose
memory to watch for an external endpoint), `--concurrency` and `--slo` (load levels after a model's samples).

Why a module of its own: the runner stays orchestration. For each model it asks `Serving.start` what to run
(the entry's own backend, or the `openai` backend against a server started here) and which process the trackers
watch, `Serving.check_alive` after a failed sample (a dead server fails the model's remaining samples at once),
and `Serving.finish` at the model's end (load levels, then the server stops).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, cast

from harness.backends import backend_class, backend_ref
from harness.backends.base import BackendOptions
from harness.backends.llama_cpp import LlamaCppBackend
from harness.corpus import Talk
from harness.errors import HarnessError
from harness.http import EndpointConfig
from harness.interrupts import exit_signal
from harness.load import (
    DEFAULT_SLO,
    LoadClient,
    LoadRequest,
    Slo,
    level_time_limit,
    parse_concurrency,
    parse_slo,
    run_load,
)
from harness.models.registry import ModelEntry
from harness.prompts import PromptTemplate
from harness.scenarios.summarize import SummarizeConfig, SummarizeScenario
from harness.servers import ManagedServer, ServerSettings, server_class, server_names
from harness.servers.base import exit_description, local_server_pid

Printer = Callable[[str], None]
# The backend that talks to a server, by its registered name (harness.backends.openai_http): served models run
# on it, and only it is asked for its endpoint below.
HTTP_BACKEND = "openai"
MAX_LEVEL_REQUESTS = 100_000  # --level-requests above this is a typo, and its unsent requests would be rows


class _HttpBackend(Protocol):
    """What the load levels read from the `openai` backend once it has loaded: where and what the server is."""

    endpoint: EndpointConfig
    flavor: str
    estimated: bool  # prompt counts are an estimate, not a count


@dataclass
class ServedModel:
    """How one model is reached over HTTP in this run."""

    entry: ModelEntry
    options: BackendOptions  # the openai backend's options (flags = its endpoint)
    pid: int | None  # the process the trackers watch; None = not on this machine / not found
    server: ManagedServer | None = None  # started here (--via), stopped by finish()
    load_s: float | None = None  # --via: server start -> answering (its model load)
    record: dict[str, Any] = field(default_factory=dict)  # for run.json models.<id>.serving

    @property
    def backend_name(self) -> str:
        return HTTP_BACKEND

    @property
    def backend_ref(self) -> str:
        return backend_ref(HTTP_BACKEND)


class Serving:
    def __init__(
        self,
        via: str | None,
        server_pid: int | None,
        concurrency: str | None,
        slo: str | None,
        entries: Sequence[ModelEntry],
        server_ready_timeout_s: float = 120.0,
        level_requests: int | None = None,
        level_seconds: float | None = None,
    ) -> None:
        self.via = via
        self.server_pid = server_pid
        self.levels = parse_concurrency(concurrency) if concurrency else []
        self.slo: Slo = parse_slo(slo) if slo else DEFAULT_SLO
        self.ready_timeout_s = server_ready_timeout_s
        # Each level holds its N in flight for at least this many requests / seconds (harness.load.run_level);
        # None / 0 = the defaults: the run's requests, and at least 2 per slot.
        self.level_requests = level_requests
        self.level_seconds = float(level_seconds or 0.0)
        self._check_level_minimums()
        if via is not None:
            server_class(via).preflight()  # unknown name or not installed: one line naming the fix
            wrong = [e.id for e in entries if e.backend != LlamaCppBackend.name]
            if wrong:
                raise HarnessError(
                    f"--via {via} serves GGUF weights of llama_cpp entries; {', '.join(wrong)} "
                    f"{'is' if len(wrong) == 1 else 'are'} not (servers: {', '.join(server_names())})"
                )
        elif slo and not self.levels:
            raise HarnessError("--slo applies to --concurrency levels; add --concurrency 1,2,4")
        http = via is not None or any(e.backend == HTTP_BACKEND for e in entries)
        if self.levels and not http:
            raise HarnessError("--concurrency needs a server: add --via llama-cpp-server or use an openai entry")
        if server_pid is not None and (via is not None or not http):
            raise HarnessError("--server-pid is for openai entries (external servers); --via knows its server's pid")

    def _check_level_minimums(self) -> None:
        requests, seconds = self.level_requests, self.level_seconds
        if requests is not None and (isinstance(requests, bool) or not 1 <= requests <= MAX_LEVEL_REQUESTS):
            raise HarnessError(f"--level-requests {requests}: give a whole number from 1 to {MAX_LEVEL_REQUESTS}")
        if not math.isfinite(seconds) or seconds < 0:
            raise HarnessError(f"--level-seconds {seconds:g}: give a number of seconds, 0 or more (e.g. 60)")
        if (requests is not None or seconds > 0) and not self.levels:
            given = "--level-requests" if requests is not None else "--level-seconds"
            raise HarnessError(f"{given} applies to --concurrency levels; add --concurrency 1,2,4")

    def applies(self, entry: ModelEntry) -> bool:
        return self.via is not None or entry.backend == HTTP_BACKEND

    def start(
        self, entry: ModelEntry, weights: Path | None, options: BackendOptions, run_dir: Path, echo: Printer
    ) -> ServedModel | None:
        """None for an in-process model; else how to reach it (a --via server is started and ready)."""
        if not self.applies(entry):
            return None
        if self.via is None:
            return self._external(entry, weights, options, echo)
        flags = options.flags
        assert weights is not None  # --via takes llama_cpp entries only (checked in __init__), never remote
        settings = ServerSettings(
            model_id=entry.id,
            weights=weights,
            threads=options.threads,
            n_ctx=options.n_ctx,
            log_path=run_dir / f"server-{entry.id}.log",
            n_gpu_layers=int(getattr(flags, "n_gpu_layers", 0)),
            flash_attn=bool(getattr(flags, "flash_attn", False)),
            repack=getattr(flags, "repack", None) is not False,
            use_mmap=bool(getattr(flags, "use_mmap", True)),
            parallel=max(self.levels, default=1),  # a slot per request of the highest load level (n_ctx each)
            ready_timeout_s=self.ready_timeout_s,
        )
        server = server_class(self.via)(settings)
        echo(f"   starting {self.via} on {server.url} (log {settings.log_path.name})")
        atexit.register(server.stop)  # never leave a server behind, whatever ends the run
        ready_s = server.start()
        endpoint = server.endpoint()
        served = ServedModel(
            entry=entry,
            options=replace(options, flags=endpoint),
            pid=server.pid,
            server=server,
            load_s=ready_s,
            record={"via": self.via, "endpoint": endpoint.root, "pid": server.pid, "ready_s": round(ready_s, 3),
                    "command": server.command(), "log": settings.log_path.name},
        )  # fmt: skip
        echo(f"   {self.via} ready in {ready_s:.2f} s (pid {server.pid}); memory columns are the server's")
        return served

    def _external(
        self, entry: ModelEntry, weights: Path | None, options: BackendOptions, echo: Printer
    ) -> ServedModel:
        flags = options.flags
        assert isinstance(flags, EndpointConfig)
        if flags.tokenizer is None and weights is not None and weights.is_file() and weights.suffix == ".gguf":
            flags = replace(flags, tokenizer=str(weights))  # the entry's own GGUF tokenises prompts locally
        pid = self.server_pid if self.server_pid is not None else local_server_pid(flags.root)
        note = (
            f"--server-pid {pid}"
            if self.server_pid is not None
            else f"pid {pid}, found listening on the endpoint's port"
            if pid is not None
            else "server process not found on this machine: memory columns are empty (pass --server-pid)"
        )
        echo(f"   endpoint {flags.root} ({flags.served_model}); memory: {note}")
        return ServedModel(entry, replace(options, flags=flags), pid, record={"endpoint": flags.root, "memory": note})

    def trackers(self, served: ServedModel | None, trackers: list[Any]) -> list[Any]:
        """The trackers to run: without the memory tracker when the server's process is unknown (the worker's
        memory would be the HTTP client's, not the model's)."""
        if served is None or served.pid is not None:
            return trackers
        return [t for t in trackers if getattr(t, "name", "") != "memory"]

    @staticmethod
    def check_alive(served: ServedModel | None, wait_s: float = 0.0) -> str | None:
        """Why the model cannot go on (its managed server exited: its exit code or signal), or None.
        `wait_s`: after a failed request, give a dying server that long to be reaped, so a crash reads as
        the server's signal rather than the client's "connection closed"."""
        if served is None or served.server is None or served.server.process is None:
            return None
        process = served.server.process
        if wait_s > 0:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=wait_s)
        if served.server.alive:
            return None
        return (
            f"server {served.server.name} (pid {served.pid}) {exit_description(process.returncode)}: "
            f"{served.server.log_tail(1)}"
        )

    @staticmethod
    def server_signal(served: ServedModel | None) -> str | None:
        """The signal that killed a managed server that has exited, else None."""
        if served is None or served.server is None or served.server.process is None:
            return None
        return exit_signal(served.server.process.returncode)

    def finish(
        self,
        served: ServedModel | None,
        template: PromptTemplate,
        talks: Sequence[Talk],
        repeats: int,
        max_new_tokens: int,
        run_dir: Path,
        echo: Printer,
    ) -> list[dict[str, Any]]:
        """The load levels (when asked for and the server still answers), then stop a managed server. Each
        request generates up to `max_new_tokens`, as the run's samples."""
        if served is None:
            return []
        try:
            if self.levels and self.check_alive(served) is None:
                return self._load(served, template, talks, repeats, max_new_tokens, run_dir, echo)
            return []
        finally:
            if served.server is not None:
                served.server.stop()

    def _load(
        self,
        served: ServedModel,
        template: PromptTemplate,
        talks: Sequence[Talk],
        repeats: int,
        max_new_tokens: int,
        run_dir: Path,
        echo: Printer,
    ) -> list[dict[str, Any]]:
        backend = backend_class(HTTP_BACKEND)(
            Path(served.options.flags.tokenizer or "."),  # type: ignore[attr-defined]
            served.options,
            served.entry.prompt_style,
        )
        http = cast(_HttpBackend, backend)
        try:
            info = backend.load()
            # The talks are fitted into n_ctx as the summarize scenario fits them for the samples: the load
            # measurement's own choice (the same prompts), not the run's scenario.
            fit = SummarizeScenario(backend, template, info, SummarizeConfig(max_new_tokens, 0))
            prepared = [fit.prepare(talk.text) for talk in talks]  # once per talk, not per repeat
            requests: list[LoadRequest] = []
            for rep in range(repeats):
                for talk, fitted in zip(talks, prepared, strict=True):
                    counted = None if http.estimated else len(fitted.ids) or None  # an estimate is no count
                    requests.append(LoadRequest(len(requests), talk.id, rep, fitted.rendered, counted))
            client = LoadClient(
                http.endpoint,
                http.flavor,
                max_new_tokens,
                served.options.n_ctx,
                served.options.chat_template_kwargs,
            )
        except HarnessError as exc:
            echo(f"   load test skipped: {exc}")
            return []
        finally:
            with contextlib.suppress(Exception):
                backend.close()
        least = max(len(requests), self.level_requests or 0)
        held = f"at least {least} request{'s' if least != 1 else ''}"
        if not self.level_requests:
            held += " and 2 per slot"
        if self.level_seconds:
            held += f" and {self.level_seconds:g} s"
        echo(
            f"   load: {len(requests)} requests per pass, levels {','.join(map(str, self.levels))} ({held} each), "
            f"slo {self.slo}"
        )
        slots = served.server.slots if served.server is not None else None
        return run_load(
            client, requests, self.levels, self.slo, run_dir, served.entry.id, echo,
            level_limit_s=level_time_limit(self.level_seconds, client.config.timeout_s), slots=slots,
            min_requests=self.level_requests, min_seconds=self.level_seconds,
        )  # fmt: skip
