"""The worker: one process per model (× configuration). Loads the backend, then answers the parent.

Generic: it knows a backend and a scenario by importable references ("module:QualName"), both from the job. It
waits for one request at a time (see `protocol`), so the parent's own work -- scoring, writing the row,
reading memory -- never overlaps a timed generation, and the parent alone decides the sample order.
Timing happens here, in the thread that drives the engine; memory is observed from the parent.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from harness.backends import backend_class
from harness.backends.base import Backend, BackendOptions
from harness.errors import HarnessError
from harness.launchers.protocol import (
    Fatal,
    Load,
    Loaded,
    Ready,
    RunSample,
    SampleDone,
    SampleFailed,
    Stop,
    WarmedUp,
    Warmup,
)
from harness.prompts import PromptTemplate
from harness.scenarios import scenario_class
from harness.scenarios.base import Scenario

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs, picklable: sent once, at spawn."""

    model_id: str
    backend: str  # registry name, or "module:Class" for a backend defined outside harness.backends
    model_path: str
    prompt_style: str
    options: BackendOptions
    template: PromptTemplate
    # scenario_ref(cls), "module:Class", so a scenario defined outside harness.scenarios loads here too (a
    # registered name works as well)
    scenario: str
    scenario_config: Any  # what the scenario's build_config returned as `config` (its config dataclass)
    env: dict[str, str] = field(default_factory=dict)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {text}"


def worker_main(conn: Connection, job: WorkerJob, in_process: bool = False) -> None:
    if not in_process:
        # Ctrl-C (and systemd's SIGTERM) reach the whole process group; the parent decides what happens
        # -- it kills this worker at once -- and the worker must not die with a KeyboardInterrupt
        # traceback, or be counted as a crashed sample, in the middle of one. The parent started us with
        # both signals blocked (ProcessLauncher.start), so one that arrived during start-up is pending:
        # ignore them first, then unblock (the pending one is discarded).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if hasattr(signal, "pthread_sigmask"):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
        die_with_parent()
        os.environ.update(job.env)
    try:
        _serve(conn, job)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent is gone: nobody to report to, exit quietly
    except Exception as exc:  # report, don't die silently: the parent turns this into error rows
        with contextlib.suppress(BrokenPipeError, OSError):
            conn.send(Fatal(one_line(exc), traceback.format_exc()))
    finally:
        conn.close()


def die_with_parent() -> None:
    """Linux: have the kernel SIGKILL this worker when the parent dies (prctl PR_SET_PDEATHSIG), so a
    killed parent leaves no orphan finishing a sample nobody will read. Elsewhere the worker notices
    the closed pipe at its next message and exits quietly."""
    if not sys.platform.startswith("linux"):
        return
    parent = mp.parent_process()
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if parent is not None and os.getppid() != parent.pid:
        os._exit(0)  # the parent died before prctl took effect


def _serve(conn: Connection, job: WorkerJob) -> None:
    cls = backend_class(job.backend)
    backend: Backend = cls(Path(job.model_path), job.options, job.prompt_style)
    conn.send(Ready())  # imports done: the parent records RSS "before load" now
    scenario: Scenario | None = None
    while True:
        msg = conn.recv()
        if isinstance(msg, Stop):
            backend.close()
            return
        if isinstance(msg, Load):
            t0 = time.perf_counter()
            info = backend.load()
            load_s = time.perf_counter() - t0
            scenario = scenario_class(job.scenario)(backend, job.template, info, job.scenario_config)
            conn.send(Loaded(load_s, info.provider, info.n_ctx, info.mmap, dict(info.extra), cls.system_info()))
        elif isinstance(msg, Warmup):
            assert scenario is not None, "Warmup before Load"
            t0 = time.perf_counter()
            if msg.runs:
                scenario.warmup(msg.spec, msg.runs)
            conn.send(WarmedUp(time.perf_counter() - t0, msg.runs))
        elif isinstance(msg, RunSample):
            assert scenario is not None, "RunSample before Load"
            try:
                result = scenario.run_sample(msg.spec)
            except Exception as exc:
                # Backends' request errors say whether the connection itself failed (harness.http.RequestError).
                lost = getattr(exc, "lost_connection", False) is True
                conn.send(SampleFailed(msg.spec.index, one_line(exc), lost_connection=lost))
            else:
                conn.send(SampleDone(result))
        else:
            raise TypeError(f"unexpected message {msg!r}")
