"""One worker for one model (× configuration), seen from the parent: start, load, warm up, then one
sample per request, with every tracker's window around the load and around each sample.

The session hides the pipe protocol from the runner: `open()` returns once the model is warm, `run()`
returns one `SampleOutcome` per sample -- the worker's result (or failure) plus the trackers' columns.
A worker that dies or misses the deadline turns that sample into a failure and the session into a dead
one; the runner decides what to do with the samples that remain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.launchers.process import InProcessLauncher, Launcher, ProcessLauncher, WorkerDied
from harness.launchers.protocol import (
    Fatal,
    FromWorker,
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
from harness.launchers.watchdog import PhaseDeadlines, overran, phase_timeout_message, timeout_message
from harness.launchers.worker import WorkerJob
from harness.scenarios.base import SampleResult, SampleSpec
from harness.trackers.base import Tracker, TrackerReport

LauncherFactory = Callable[[WorkerJob], Launcher]


def process_launcher(job: WorkerJob) -> Launcher:
    return ProcessLauncher(job)


def in_process_launcher(job: WorkerJob) -> Launcher:
    return InProcessLauncher(job)


class SessionFailed(RuntimeError):
    """The worker could not be started, loaded or warmed up; the message is for every remaining row.
    `signal_name`: the signal that killed the worker, when one did."""

    def __init__(self, message: str, signal_name: str | None = None) -> None:
        super().__init__(message)
        self.signal_name = signal_name


@dataclass(frozen=True)
class SampleOutcome:
    spec: SampleSpec
    result: SampleResult | None  # None = failed
    error: str = ""
    columns: dict[str, Any] = field(default_factory=dict)  # trackers' columns for the sample window
    signal_name: str | None = None  # the signal that killed the worker during the sample
    lost_connection: bool = False  # the backend's connection failed (a managed server may have died)


@dataclass
class SessionInfo:
    loaded: Loaded | None = None
    warmed: WarmedUp | None = None
    load_columns: dict[str, Any] = field(default_factory=dict)  # load-window tracker columns
    reports: list[tuple[str, TrackerReport]] = field(default_factory=list)  # filled by close()


class WorkerSession:
    def __init__(
        self,
        job: WorkerJob,
        trackers: list[Tracker],
        launcher_factory: LauncherFactory = process_launcher,
        deadlines: PhaseDeadlines | None = None,
        watch_pid: int | None = None,
    ) -> None:
        self.job = job
        self.trackers = trackers
        self.launcher = launcher_factory(job)
        # Every phase has a deadline enforced here, in the parent (launchers/watchdog.py): the worker cannot
        # be trusted to notice its own stall (SIGSTOP, a trickling server, a template burning CPU).
        self.deadlines = deadlines or PhaseDeadlines()
        self.info = SessionInfo()
        # The process the trackers watch: the worker, or the server it drives (harness run --via).
        self.watch_pid = watch_pid
        self.dead: str | None = None  # why the worker is gone, once it is
        self.dead_signal: str | None = None  # the signal that killed it, when one did
        self.timed_out: str | None = None  # set (to the row's message) when the watchdog killed it
        self.phase = "start"  # start, load, warm-up, sample: where a dying worker was (named in its rows)

    @property
    def pid(self) -> int:
        return self.launcher.pid

    # -- lifecycle ---------------------------------------------------------------------------------------
    def open(
        self, warmup_spec: SampleSpec | None, warmup_runs: int, on_loaded: Callable[[], None] | None = None
    ) -> SessionInfo:
        """Start the worker, load the model inside tracker windows, warm up (`on_loaded` is called between
        the two, for progress). Raises SessionFailed."""
        self.launcher.start()
        self._expect(Ready, self.deadlines.start_s, "worker start")
        self.phase = "load"
        self._window_start("load")
        self.launcher.send(Load())
        try:
            self.info.loaded = self._expect(Loaded, self.deadlines.load_s, "model load")
        finally:
            self.info.load_columns = self._window_stop(None)
        spec = warmup_spec if warmup_runs else None
        if on_loaded is not None:
            on_loaded()
        if spec is not None:
            self.phase = "warm-up"
            self.launcher.send(Warmup(spec, warmup_runs))
            self.info.warmed = self._expect(WarmedUp, self.deadlines.warmup_s, "warm-up")
        else:
            self.info.warmed = WarmedUp(0.0, 0)
        return self.info

    def run(self, spec: SampleSpec, timeout_s: float | None = None) -> SampleOutcome:
        """One sample, with every tracker's window around it."""
        if self.dead:
            return SampleOutcome(spec, None, self.dead, signal_name=self.dead_signal)
        self.phase = "sample"
        self._window_start("sample")
        self.launcher.send(RunSample(spec))
        t0 = time.monotonic()
        try:
            msg = self.launcher.recv(timeout_s)
        except TimeoutError:
            return self._kill_timed_out(spec, timeout_s)
        except WorkerDied as exc:
            self._window_stop(None)
            self.dead, self.dead_signal = str(exc), exc.signal_name
            return SampleOutcome(spec, None, self.dead, signal_name=exc.signal_name)
        if isinstance(msg, SampleDone) and overran(timeout_s, time.monotonic() - t0, msg.result.latency.e2e_s):
            # A stalled worker that recovered: its figures would be fiction, and it may stall again.
            return self._kill_timed_out(spec, timeout_s)
        if isinstance(msg, SampleDone):
            return SampleOutcome(spec, msg.result, "", self._window_stop(msg.result))
        self._window_stop(None)
        if isinstance(msg, SampleFailed):
            return SampleOutcome(spec, None, msg.message, lost_connection=msg.lost_connection)
        if isinstance(msg, Fatal):
            self.dead = msg.message
            return SampleOutcome(spec, None, msg.message)
        raise TypeError(f"unexpected message {msg!r}")

    def close(self) -> SessionInfo:
        if not self.dead:
            self.launcher.send(Stop())
        self.launcher.close(self.deadlines.stop_s)  # killed if it has not exited by then
        self.info.reports = [(t.name, t.close()) for t in self.trackers]
        return self.info

    # -- internals ---------------------------------------------------------------------------------------
    def _kill_timed_out(self, spec: SampleSpec, timeout_s: float | None) -> SampleOutcome:
        """The watchdog: kill the worker whose sample passed its deadline; the sample is an error row."""
        self.launcher.kill()
        self._window_stop(None)
        self.dead = self.timed_out = timeout_message(timeout_s or 0.0)
        return SampleOutcome(spec, None, self.dead)

    def _expect(self, kind: type, timeout_s: float | None, phase: str) -> Any:
        try:
            msg: FromWorker = self.launcher.recv(timeout_s)
        except WorkerDied as exc:
            self.dead, self.dead_signal = str(exc), exc.signal_name
            raise SessionFailed(self.dead, exc.signal_name) from None
        except TimeoutError:
            self.launcher.kill()
            self.dead = phase_timeout_message(phase, timeout_s or 0.0)
            raise SessionFailed(self.dead) from None
        if isinstance(msg, Fatal):
            self.dead = msg.message
            raise SessionFailed(msg.message)
        if not isinstance(msg, kind):
            raise TypeError(f"expected {kind.__name__} from the worker, got {msg!r}")
        return msg

    def _window_start(self, phase: str) -> None:
        for tracker in self.trackers:
            tracker.start(self.watch_pid or self.pid, phase)  # type: ignore[arg-type]

    def _window_stop(self, result: SampleResult | None) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        for tracker in reversed(self.trackers):  # windows nest: the first opened closes last
            columns.update(tracker.stop(result))
        return columns
