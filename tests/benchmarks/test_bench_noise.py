"""What the system-noise tracker costs (harness.trackers.noise). Run quiet, with timings:

    .venv/bin/python -m pytest tests/benchmarks/test_bench_noise.py --benchmark-enable -s

- `test_bench_noise_window`: the parent's work per sample -- a /proc snapshot at each end of the window and
  the canary before and after. It runs outside the timed window (the worker is idle then), so it adds wall
  time per sample, not decode time.
- `test_noise_tracker_decode_cost_interleaved`: decode_tok_s of tiny-qwen2 with and without the tracker,
  runs alternating (A B A B ...) so a drifting machine hits both alike; prints the median ratio. Target:
  the tracker costs < 1 % of decode (nothing of it runs inside the window).
In the default test run (--benchmark-disable) each body runs once as a plain test.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import harness.run.sessions as sessions_module
from harness.run import RunConfig, Runner
from harness.trackers import make_trackers
from harness.trackers.base import TrackerContext
from harness.trackers.noise import NoiseTracker

HAS_PROC = Path("/proc/stat").is_file()


@pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc")
def test_bench_noise_window(benchmark) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tracker = NoiseTracker(TrackerContext(threads=os.cpu_count() or 1))

        def window() -> dict:
            tracker.start(sleeper.pid, "sample")
            return tracker.stop(None)

        cols = benchmark(window)
        assert cols["canary_ms_before"] is not None and cols["other_cpu_pct"] is not None
    finally:
        sleeper.kill()
        sleeper.wait()


def _without_noise(context: TrackerContext):  # the trackers every run uses, less this one
    return [t for t in make_trackers(context) if t.name != "noise"]


def _decode(tmp_path: Path, label: str, with_noise: bool, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    with monkeypatch.context() as m:
        if not with_noise:
            m.setattr(sessions_module, "make_trackers", _without_noise)  # the sample windows' trackers
        cfg = RunConfig(
            models=["tiny-qwen2"], talks=["alibaba-qwen"], repeats=3, out=tmp_path / label, measure_bandwidth=False
        )
        runner = Runner(cfg, echo=lambda _line: None)
        run_dir, errors = runner.run()
    assert errors == 0 and runner.status == "complete", runner.status  # e.g. interrupted by a signal
    return pd.read_csv(run_dir / "results.csv")["decode_tok_s"].dropna().tolist()


def test_noise_tracker_decode_cost_interleaved(benchmark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("llama_cpp")
    rounds = 1 if benchmark.disabled else 4  # the default test run checks the plumbing only

    def interleaved() -> list[float]:
        ratios = []
        for i in range(rounds):
            on = statistics.median(_decode(tmp_path, f"on{i}", True, monkeypatch))
            off = statistics.median(_decode(tmp_path, f"off{i}", False, monkeypatch))
            ratios.append(on / off)
        return ratios

    ratios = benchmark.pedantic(interleaved, rounds=1, iterations=1)
    cost_pct = 100 * (1 - statistics.median(ratios))
    print(f"\nnoise tracker: decode with/without, per round {[round(r, 4) for r in ratios]}; cost {cost_pct:+.2f} %")
    assert all(r > 0 for r in ratios)
