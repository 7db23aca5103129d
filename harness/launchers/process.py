"""How a worker runs: in a fresh process (real runs) or in a thread of this process (tests).

One process per model, as optimum-benchmark does: one model's memory never leaks into another's figure,
and a crash in native code (a segfault in the engine, an OOM kill) ends that worker only. The parent
waits on the pipe with a timeout -- blocking, never spinning -- and notices a dead worker.

`InProcessLauncher` runs the same worker loop in a thread over the same pipe protocol, so the runner's
orchestration can be tested without spawning (and its memory figures are this process's: tests only).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import threading
import time
from typing import Protocol

from harness.interrupts import exit_signal, signals_blocked, signals_deferred
from harness.launchers.protocol import FromWorker, Stop, ToWorker
from harness.launchers.worker import WorkerJob, worker_main


class WorkerDied(RuntimeError):
    """The worker vanished (crash, kill, OOM) or stopped answering within a deadline. `signal_name`: the
    signal that killed it (SIGSEGV, SIGKILL...), None when it exited on its own."""

    def __init__(self, message: str, signal_name: str | None = None) -> None:
        super().__init__(message)
        self.signal_name = signal_name


class Launcher(Protocol):
    @property
    def pid(self) -> int: ...

    def start(self) -> None: ...

    def send(self, msg: ToWorker) -> None: ...

    def recv(self, timeout_s: float | None = None) -> FromWorker: ...

    def kill(self) -> None: ...

    def close(self, timeout_s: float = 10.0) -> None: ...


class ProcessLauncher:
    def __init__(self, job: WorkerJob, poll_s: float = 0.5) -> None:
        ctx = mp.get_context("spawn")
        self._parent, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(target=worker_main, args=(child, job), name=f"harness-{job.model_id}", daemon=True)
        self._child = child
        self.poll_s = poll_s

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def start(self) -> None:
        # The worker inherits a signal mask with SIGINT/SIGTERM blocked, so a Ctrl-C during its start-up
        # cannot kill it with a KeyboardInterrupt traceback before it has set its own handling (worker_main).
        with signals_deferred(), signals_blocked():
            self.process.start()
        self._child.close()  # the parent keeps only its end, so EOF is seen when the worker dies

    def send(self, msg: ToWorker) -> None:
        # A dead worker is reported by recv(); nothing to do here.
        with contextlib.suppress(BrokenPipeError, OSError):
            self._parent.send(msg)

    def recv(self, timeout_s: float | None = None) -> FromWorker:
        """The worker's next message. Raises WorkerDied if it exits, or if `timeout_s` passes first."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            wait = self.poll_s if deadline is None else max(0.0, min(self.poll_s, deadline - time.monotonic()))
            if self._parent.poll(wait):
                try:
                    return self._parent.recv()
                except EOFError:
                    raise self._death() from None
            if not self.process.is_alive():
                if self._parent.poll(0):  # drain anything sent just before exit
                    continue
                raise self._death()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"no answer from the worker within {timeout_s:g} s")

    def _death(self) -> WorkerDied:
        self.process.join(timeout=5)
        code = self.process.exitcode
        name = exit_signal(code)
        if name is not None:
            return WorkerDied(f"worker process killed by signal {name}", signal_name=name)
        return WorkerDied(f"worker process exited with code {code}")

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)

    def close(self, timeout_s: float = 10.0) -> None:
        """Wait up to `timeout_s` for the worker to exit after Stop (the stop deadline), then kill it."""
        if self.process.is_alive():
            self.process.join(timeout=timeout_s)
        self.kill()
        self._parent.close()


class InProcessLauncher:
    """The worker loop in a daemon thread of this process, for tests of the orchestration."""

    def __init__(self, job: WorkerJob) -> None:
        self._parent, child = mp.Pipe(duplex=True)
        self._thread = threading.Thread(
            target=worker_main, args=(child, job, True), name=f"worker-{job.model_id}", daemon=True
        )

    @property
    def pid(self) -> int:
        return os.getpid()

    def start(self) -> None:
        self._thread.start()

    def send(self, msg: ToWorker) -> None:
        self._parent.send(msg)

    def recv(self, timeout_s: float | None = None) -> FromWorker:
        if not self._parent.poll(timeout_s):
            if not self._thread.is_alive():
                raise WorkerDied("worker thread exited")
            raise TimeoutError(f"no answer from the worker within {timeout_s:g} s")
        try:
            return self._parent.recv()
        except EOFError:
            raise WorkerDied("worker thread exited") from None

    def kill(self) -> None:
        self._parent.close()  # the thread's next recv/send fails and it returns

    def close(self, timeout_s: float = 10.0) -> None:
        with contextlib.suppress(OSError):
            self._parent.send(Stop())
        self._thread.join(timeout=timeout_s)
        with contextlib.suppress(OSError):
            self._parent.close()
