"""Launch one model's worker in a fresh process (multiprocessing "spawn") and relay its messages.

One process per model, as optimum-benchmark does: one model's memory never leaks into another's figure,
and a crash in native code (a segfault in the engine, an OOM kill) ends that worker only. The parent
waits on the pipe with a timeout -- blocking, never spinning -- and notices a dead worker.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
from collections.abc import Iterator
from typing import Any

from harness.launchers.worker import ModelJob, worker_main


class WorkerDied(RuntimeError):
    pass


class ProcessLauncher:
    def __init__(self, job: ModelJob, poll_s: float = 0.5) -> None:
        ctx = mp.get_context("spawn")
        self._parent, child = ctx.Pipe(duplex=True)
        self.process = ctx.Process(
            target=worker_main, args=(child, job), name=f"harness-{job.model_id}", daemon=True
        )
        self._child = child
        self.poll_s = poll_s

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def start(self) -> None:
        self.process.start()
        self._child.close()  # the parent keeps only its end, so EOF is seen when the worker dies

    def go(self) -> None:
        # A dead worker is reported by messages(); nothing to do here.
        with contextlib.suppress(BrokenPipeError, OSError):
            self._parent.send(("go",))

    def messages(self) -> Iterator[tuple[Any, ...]]:
        """Messages until the worker says done/fatal; raises WorkerDied if it vanishes."""
        while True:
            if self._parent.poll(self.poll_s):
                try:
                    msg = self._parent.recv()
                except EOFError:
                    raise WorkerDied(self._death_reason()) from None
                yield msg
                if msg[0] in ("done", "fatal"):
                    return
            elif not self.process.is_alive():
                # Drain anything sent just before exit.
                if self._parent.poll(0):
                    continue
                raise WorkerDied(self._death_reason())

    def _death_reason(self) -> str:
        self.process.join(timeout=5)
        code = self.process.exitcode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = str(-code)
            return f"worker process killed by signal {name}"
        return f"worker process exited with code {code}"

    def close(self) -> None:
        if self.process.is_alive():
            self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)
        self._parent.close()
