"""SIGINT and SIGTERM during a run: handled alike, promptly, and without a traceback.

Why: SIGTERM is what `timeout`, CI runners and systemd send, Ctrl-C sends SIGINT to the whole process
group. Either way the run must stop *now* (not after the current sample, which may take minutes), keep
every row already written, and say in run.json that it was interrupted and by what, so that
`harness run --resume RUN_DIR` can complete it.

How: `interruptible(on_signal)` installs one handler for both signals for the duration of a run. The
handler first calls `on_signal` -- the runner kills its live workers there, so a parent blocked waiting
for a sample wakes up at once -- then raises `RunInterrupted` in the main thread, wherever it is
(waiting on a worker, downloading weights, probing the machine). Rows are never torn by it: the writer
holds both signals back while it writes a row (`signals_deferred` below). The runner
catches `RunInterrupted`, finalises run.json with `status: interrupted` and the signal's name, and the
command exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM), as shells do.

Workers ignore SIGINT (the parent decides) and die with their parent (`PR_SET_PDEATHSIG`, see
`harness.launchers.worker`), so no orphan finishes a sample nobody will read.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)


def exit_signal(code: int | None) -> str | None:
    """The signal's name (SIGSEGV) for the exit code of a child a signal killed (multiprocessing's `exitcode`,
    Popen's `returncode`: minus the signal number), else None. Workers and servers report their deaths with it."""
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return str(-code)


class RunInterrupted(BaseException):  # like KeyboardInterrupt: a stop request, not an error
    """Raised in the main thread when SIGINT or SIGTERM arrives during a run."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(self.signal_name)

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class Guard:
    """Handed out by `interruptible`: `settle()` stops signals from raising while the run finalises."""

    def __init__(self) -> None:
        self.fired: int | None = None
        self.settled = False

    def settle(self) -> None:
        self.settled = True


@contextlib.contextmanager
def interruptible(on_signal: Callable[[int], None] = lambda _signum: None) -> Iterator[Guard]:
    """Turn SIGINT/SIGTERM into `RunInterrupted` for the body; `on_signal(signum)` runs first.

    Only the first signal raises, and none after `guard.settle()`: a second Ctrl-C while the run is
    stopping cannot interrupt the finalisation of run.json. Outside the main thread (tests that run the
    runner in a thread) signals cannot be handled and the body runs unguarded."""
    guard = Guard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return

    def handler(signum: int, _frame: FrameType | None) -> None:
        if guard.fired is not None or guard.settled:
            return
        guard.fired = signum
        with contextlib.suppress(Exception):
            on_signal(signum)
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, handler) for s in HANDLED}
    try:
        yield guard
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for the body and deliver them afterwards (main thread only).

    Python runs signal handlers in the main thread, whichever OS thread the kernel picked (the memory
    sampler's, say), so masking the main thread alone would not keep a handler out of the body. Instead
    the body runs with a handler that only notes the signal; the noted signals are raised again, to the
    real handlers, when the body is done. Used around writing one row and replacing run.json."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        noted.append(signum)

    previous = {s: signal.signal(s, note) for s in HANDLED}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)
        for signum in dict.fromkeys(noted):
            signal.raise_signal(signum)


@contextlib.contextmanager
def signals_blocked() -> Iterator[None]:
    """Block SIGINT/SIGTERM in this thread's signal mask (POSIX). A process started meanwhile inherits the
    mask, so it cannot be killed by a Ctrl-C before it has set up its own handling (see the worker)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, set(HANDLED))
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


__all__ = ["HANDLED", "Guard", "RunInterrupted", "interruptible", "signals_blocked", "signals_deferred"]
