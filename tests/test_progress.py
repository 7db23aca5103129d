"""Run progress: ETA from finished samples, plain lines in a log, a live line on a terminal."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from harness.progress import Progress, estimate_remaining, format_duration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def plain_console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=False, width=60, soft_wrap=True), buf


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0:00"), (44.6, "0:45"), (61, "1:01"), (725, "12:05"), (3723, "1:02:03")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_estimate_remaining() -> None:
    assert estimate_remaining([], 5) is None  # nothing finished: no basis for a guess
    assert estimate_remaining([10.0, 20.0], 4) == 60.0  # mean 15 s x 4 samples
    assert estimate_remaining([10.0], 3, elapsed_current=4.0) == 26.0  # the current one is 4 s in
    # A current sample running long never makes the rest look shorter than the samples after it.
    assert estimate_remaining([10.0], 3, elapsed_current=25.0) == 20.0
    assert estimate_remaining([10.0], 0) == 0.0


def test_plain_log_gets_one_line_per_step_with_eta() -> None:
    console, buf = plain_console()
    clock = FakeClock()
    with Progress(4, console=console, clock=clock) as progress:
        assert not progress.live  # not a terminal
        progress.phase("m-[onnx]", "loading")
        progress.phase("m-[onnx]", "warming up")
        for i, (talk, seconds) in enumerate([("t1", 30.0), ("t2", 50.0), ("t3", 40.0), ("t4", 10.0)], 1):
            progress.sample_start(i, "m-[onnx]", talk, 0)
            clock.now += seconds
            progress.sample_end()  # measured on the clock since sample_start
        progress.echo("a row [bold]as printed[/bold]")
    lines = buf.getvalue().splitlines()
    assert lines == [
        "[0/4] m-[onnx] · loading…",
        "[0/4] m-[onnx] · warming up…",
        "[1/4] m-[onnx] · t1 · r0 · ETA ?",
        "[2/4] m-[onnx] · t2 · r0 · ETA 1:30",  # 30 s mean x 3 left
        "[3/4] m-[onnx] · t3 · r0 · ETA 1:20",  # 40 s mean x 2 left
        "[4/4] m-[onnx] · t4 · r0 · ETA 0:40",
        "a row [bold]as printed[/bold]",  # run output is never read as rich markup
    ]
    assert "\x1b[" not in buf.getvalue()  # no escape codes in a log
    assert progress.finished == 4 and progress.eta_seconds() == 0.0


def test_explicit_durations_and_a_phase_between_models() -> None:
    console, buf = plain_console()
    progress = Progress(3, console=console, clock=FakeClock())
    progress.sample_start(1, "a", "t1", 0)
    progress.sample_end(12.0)
    progress.phase("b", "loading")  # the counter stays at the samples done so far
    progress.sample_start(2, "b", "t1", 0)
    progress.close()
    assert buf.getvalue().splitlines()[1:] == ["[1/3] b · loading…", "[2/3] b · t1 · r0 · ETA 0:24"]


def test_terminal_shows_a_live_line_that_counts_down() -> None:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, color_system=None)
    clock = FakeClock()
    progress = Progress(3, console=console, clock=clock)
    assert progress.live
    with progress:
        progress.sample_start(1, "m", "t1", 0)
        clock.now += 20
        progress.sample_end()
        progress.sample_start(2, "m", "t2", 1)
        clock.now += 5
        assert progress.status_line() == "[2/3] m · t2 · r1 · ETA 0:35 (0:05)"  # 2 x 20 s less 5 s
        print("row printed by the runner")  # redirected above the live line
    out = buf.getvalue()
    assert "row printed by the runner" in out
    assert "[2/3] m · t2 · r1 · ETA" in out  # the live line was drawn
    assert progress._live is None  # stopped on exit
