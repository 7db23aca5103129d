"""Messages between the parent (runner) and a worker process: frozen dataclasses, sent over a pipe.

The parent drives; the worker answers. The parent hands the worker one sample at a time, so the parent
alone decides the order (round-robin over talks, models interleaved), when to give up on a sample
(watchdog) and which samples to skip (resume). Every parent message gets exactly one answer, except
`Stop`, which ends the worker.

    parent -> worker         worker -> parent
    (worker starts)          Ready                  imports done: the parent reads RSS "before load"
    Load                     Loaded | Fatal
    Warmup(spec, runs)       WarmedUp | Fatal
    RunSample(spec)          SampleDone | SampleFailed | Fatal
    Stop                     (exits)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.scenarios.base import SampleResult, SampleSpec


# parent -> worker ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    pass


@dataclass(frozen=True)
class Warmup:
    spec: SampleSpec
    runs: int


@dataclass(frozen=True)
class RunSample:
    spec: SampleSpec


@dataclass(frozen=True)
class Stop:
    pass


# worker -> parent ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ready:
    pass


@dataclass(frozen=True)
class Loaded:
    load_s: float
    provider: str
    n_ctx: int
    mmap: bool
    extra: dict[str, Any] = field(default_factory=dict)  # engine facts for run.json
    system_info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WarmedUp:
    warmup_s: float
    runs: int


@dataclass(frozen=True)
class SampleDone:
    result: SampleResult


@dataclass(frozen=True)
class SampleFailed:
    index: int
    message: str
    # The backend lost its connection (refused, cut stream): for a managed server, the parent then waits a
    # moment for the server's own exit, which names the cause better than the client's error.
    lost_connection: bool = False


@dataclass(frozen=True)
class Fatal:
    """The worker cannot go on (load failed, backend missing); it exits after sending this."""

    message: str
    traceback: str = ""


ToWorker = Load | Warmup | RunSample | Stop
FromWorker = Ready | Loaded | WarmedUp | SampleDone | SampleFailed | Fatal
