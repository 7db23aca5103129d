"""The worker: one process per model (× configuration). Loads the backend, then answers the parent.

Generic: it knows a backend by an importable reference and a scenario by name, both from the job. It
waits for one request at a time (see `protocol`), so the parent's own work -- scoring, writing the row,
reading memory -- never overlaps a timed generation, and the parent alone decides the sample order.
Timing happens here, in the thread that drives the engine; memory is observed from the parent.
"""

from __future__ import annotations

import contextlib
import os
import signal
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


@dataclass(frozen=True)
class WorkerJob:
    """Everything a worker needs, picklable: sent once, at spawn."""

    model_id: str
    backend: str  # registry name, or "module:Class" for a backend defined outside harness.backends
    model_path: str
    prompt_style: str
    options: BackendOptions
    template: PromptTemplate
    scenario: str
    scenario_config: Any  # the scenario's config dataclass
    env: dict[str, str] = field(default_factory=dict)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if isinstance(exc, HarnessError) else f"{type(exc).__name__}: {text}"


def worker_main(conn: Connection, job: WorkerJob, in_process: bool = False) -> None:
    if not in_process:
        # Ctrl-C reaches the whole process group; the parent decides what happens, the worker must not
        # die with a KeyboardInterrupt traceback in the middle of a sample.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
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
                conn.send(SampleFailed(msg.spec.index, one_line(exc)))
            else:
                conn.send(SampleDone(result))
        else:
            raise TypeError(f"unexpected message {msg!r}")
