"""Run progress: where a benchmark run is and how long the rest will take.

A run on a slow machine is silent for long stretches (a model loading, a warm-up, a 10 s generation), so
it says what it is doing: a phase line (`[0/10] smollm2-135m-instruct-q4_1 · loading…`, `… warming
up…`) and, before each sample, `[3/10] smollm2-135m-instruct-q4_1 · alibaba-qwen · r0 · ETA 0:45`.

- On a terminal the status is one live line at the bottom (rich `Live`, with a spinner and the seconds
  spent in the current step); everything else printed through `echo` -- or through plain `print`, which
  `Live` redirects -- appears above it, and the line disappears when the run ends.
- In a log (CI, a pipe, a file) there is no live line: each phase and each sample start is one plain
  line without escape codes, so the log reads as a history.

ETA = mean duration of the samples finished so far x samples not yet finished. Load and warm-up time is
not in the mean (it is paid once per model and would inflate the estimate of every sample), so the ETA
does not count the loads of the models still to come; until one sample has finished there is no ETA
("ETA ?"). On a terminal the ETA also counts down while a sample runs.

Usage (the runner):

    with Progress(total=len(samples)) as progress:
        progress.phase(model, "loading")
        progress.phase(model, "warming up")
        progress.sample_start(i, model, talk, repeat)   # i: 1-based position among the run's samples
        ...
        progress.sample_end(seconds)                     # wall time of that sample
        progress.echo("a line of output")                # printed above the live line
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

Clock = Callable[[], float]


def format_duration(seconds: float) -> str:
    """`0:45`, `12:03`, `1:02:03`: minutes and seconds, hours only when needed (rounded to the second)."""
    total = max(0, round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def estimate_remaining(durations: list[float], remaining: int, elapsed_current: float = 0.0) -> float | None:
    """Seconds left: mean finished-sample duration x `remaining` samples (the current one included),
    less the time the current sample has already run -- but never less than the samples after it take.
    None before any sample has finished."""
    if not durations:
        return None
    if remaining <= 0:
        return 0.0
    mean = sum(durations) / len(durations)
    return max(mean * remaining - elapsed_current, mean * (remaining - 1))


class Progress:
    """Progress of one run of `total` samples; see the module docstring. Use as a context manager."""

    def __init__(
        self,
        total: int,
        *,
        console: Console | None = None,
        clock: Clock = time.monotonic,
        live: bool | None = None,
    ) -> None:
        self.total = max(0, total)
        self.console = console or Console(stderr=False, soft_wrap=True)
        self.live = self.console.is_terminal if live is None else live
        self._clock = clock
        self._durations: list[float] = []
        self._position = 0  # 1-based position of the current (or last) sample
        self._status = ""  # text of the live line, without the elapsed part
        self._step_started = clock()
        self._sample_running = False
        self._live: Live | None = None
        self._spinner = Spinner("dots", text="")

    # --- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> Progress:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        if self.live and self._live is None:
            self._live = Live(
                _LiveLine(self),
                console=self.console,
                refresh_per_second=4,
                transient=True,
                redirect_stdout=True,
                redirect_stderr=True,
            )
            self._live.start()

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    # --- what the runner reports ----------------------------------------------------------------------
    def phase(self, model: str, text: str) -> None:
        """A step outside the samples: `phase(model, "loading")`, `phase(model, "warming up")`."""
        self._sample_running = False
        self._set(f"{self._counter()} {model} · {text}…")

    def sample_start(self, index: int, model: str, talk: str, repeat: int) -> None:
        """Sample number `index` (1-based, of `total`) begins."""
        self._position = index
        self._sample_running = True
        self._step_started = self._clock()
        eta = self.eta_seconds()
        self._set(
            f"[{index}/{self.total}] {model} · {talk} · r{repeat} · "
            f"ETA {'?' if eta is None else format_duration(eta)}"
        )

    def sample_end(self, seconds: float | None = None) -> None:
        """The current sample finished after `seconds` of wall time (default: since `sample_start`)."""
        if seconds is None:
            seconds = self._clock() - self._step_started
        self._durations.append(max(0.0, float(seconds)))
        self._sample_running = False

    def echo(self, text: str) -> None:
        """Print a line of run output (above the live line on a terminal); never read as markup."""
        self.console.print(Text(text), highlight=False, soft_wrap=True)

    # --- figures --------------------------------------------------------------------------------------
    @property
    def finished(self) -> int:
        return len(self._durations)

    def eta_seconds(self) -> float | None:
        """Estimated seconds until the last sample ends; None until a sample has finished."""
        if self._sample_running:
            remaining = self.total - self._position + 1
            elapsed = self._clock() - self._step_started
        else:
            remaining = self.total - max(self._position, self.finished)
            elapsed = 0.0
        return estimate_remaining(self._durations, remaining, elapsed)

    def status_line(self) -> str:
        """The live line as it reads now: the status, the time spent in this step, the live ETA."""
        elapsed = self._clock() - self._step_started
        line = self._status
        if self._sample_running:
            eta = self.eta_seconds()
            head, sep, _ = line.rpartition(" · ETA ")
            if sep:
                line = f"{head} · ETA {'?' if eta is None else format_duration(eta)}"
        return f"{line} ({format_duration(elapsed)})"

    # --- internals ------------------------------------------------------------------------------------
    def _counter(self) -> str:
        return f"[{max(self._position, self.finished)}/{self.total}]"

    def _set(self, status: str) -> None:
        self._status = status
        self._step_started = self._clock()
        if self._live is None:
            self.echo(status)  # a log: one plain line per step
        else:
            self._live.refresh()


class _LiveLine:
    """The live line's renderable: re-read at each refresh, so elapsed time and ETA tick."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        spinner = self.progress._spinner
        spinner.update(text=Text(self.progress.status_line(), no_wrap=True, overflow="ellipsis"))
        yield spinner
