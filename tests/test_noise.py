"""The system-noise tracker: its maths on fake /proc trees, and real runs with a CPU burner on the worker's CPUs
(noisy flags, the end-of-run line, compare leaving noisy samples out, --wait-quiet)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness.report import compare_output
from harness.report.load import load_run
from harness.run import RunConfig, Runner
from harness.trackers import TRACKERS
from harness.trackers.base import TrackerContext
from harness.trackers.noise import (
    OTHER_CPU_NOISY_PCT,
    QUIET_LOOK_S,
    TICK_ALLOWANCE,
    NoiseTracker,
    ProcFs,
    Snapshot,
    finish_run,
    parse_cpu_list,
    parse_pid_stat,
    parse_proc_stat,
    summarise_rows,
    window_figures,
)
from tests.runfactory import make_run

HZ = 100.0
HAS_PROC = Path("/proc/stat").is_file() and hasattr(os, "sched_getaffinity")


# --- fake /proc trees ------------------------------------------------------------------------------------


def _pid_line(pid: int, comm: str, ppid: int, utime: int, stime: int = 0, cutime: int = 0, cstime: int = 0) -> str:
    # Fields 1-17 of /proc/<pid>/stat, then a tail of zeros as the kernel writes more.
    fields = [str(pid), f"({comm})", "S", str(ppid), "1", "1", "0", "-1", "0", "0", "0", "0", "0"]
    return " ".join([*fields, str(utime), str(stime), str(cutime), str(cstime), *["0"] * 30]) + "\n"


class FakeProc:
    """A /proc tree with per-CPU counters (busy in `user`, steal), processes and a load average."""

    def __init__(self, root: Path, cpus: int = 2) -> None:
        self.root = root
        self.cpus = {c: [0, 0] for c in range(cpus)}  # cpu -> [busy, steal]
        self.procs: dict[int, list] = {}  # pid -> [comm, ppid, utime, stime, cutime, cstime, allowed]
        self.running = 1
        self.load = 0.5
        root.mkdir(parents=True, exist_ok=True)

    def proc(self, pid: int, ppid: int, ticks: int = 0, comm: str = "p", allowed: str = "0-1", reaped: int = 0) -> None:
        self.procs[pid] = [comm, ppid, ticks, 0, reaped, 0, allowed]

    def write(self) -> None:
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        lines += [f"cpu{c} {busy} 0 0 1000 0 0 0 {steal} 0 0" for c, (busy, steal) in self.cpus.items()]
        lines += ["intr 0", f"procs_running {self.running}", "procs_blocked 0"]
        (self.root / "stat").write_text("\n".join(lines) + "\n")
        (self.root / "loadavg").write_text(f"{self.load:.2f} 0.40 0.30 1/100 999\n")
        for entry in self.root.iterdir():
            if entry.name.isdigit() and int(entry.name) not in self.procs:
                for f in entry.iterdir():
                    f.unlink()
                entry.rmdir()
        for pid, (comm, ppid, ut, st, cut, cst, allowed) in self.procs.items():
            d = self.root / str(pid)
            d.mkdir(exist_ok=True)
            (d / "stat").write_text(_pid_line(pid, comm, ppid, ut, st, cut, cst))
            (d / "status").write_text(f"Name:\t{comm}\nCpus_allowed_list:\t{allowed}\n")


class StubCanary:
    def __init__(self) -> None:
        self.calls: list[list[int] | None] = []

    def run_ms(self, cpus: list[int] | None) -> float:
        self.calls.append(cpus)
        return 2.5


def _snap(t: float, cpus: dict[int, tuple[int, int]], worker: int = 0, parent: int = 0) -> Snapshot:
    return Snapshot(t=t, cpus=cpus, worker_ticks=worker, parent_ticks=parent, procs_running=1, throttle=None)


# --- parsing ---------------------------------------------------------------------------------------------


def test_pid_stat_with_spaces_and_parentheses_in_the_name() -> None:
    assert parse_pid_stat(_pid_line(42, "tmux: server (x) y", 7, 120, 30, 5, 1)) == (7, 150, 6)


def test_cpu_lists_and_proc_stat() -> None:
    assert parse_cpu_list("0-3,6,8-9\n") == [0, 1, 2, 3, 6, 8, 9]
    reading = parse_proc_stat(
        "cpu  9 9 9 9 9 9 9 9 9 9\ncpu0 10 1 5 900 3 2 4 7 0 0\ncpu1 1 0 0 50 0 0 0 0\nprocs_running 3\n"
    )
    # busy = user + nice + system + irq + softirq (idle and iowait are not busy; steal apart)
    assert reading.cpus == {0: (22, 7), 1: (1, 0)}
    assert reading.procs_running == 3


# --- the window maths ------------------------------------------------------------------------------------


def test_other_processes_are_the_busy_ticks_minus_the_worker_and_the_harness() -> None:
    # 1 s on two CPUs: 150 busy ticks, of which the worker used 60 and the harness parent 10 -> others 80.
    a = _snap(0.0, {0: (0, 0), 1: (0, 0)})
    b = _snap(1.0, {0: (100, 0), 1: (50, 0)}, worker=60, parent=10)
    fig = window_figures(a, b, HZ)
    assert fig.other_ticks == 80
    assert fig.other_cpu_pct == pytest.approx(80.0)
    assert fig.steal_pct == 0
    assert fig.noisy


def test_the_worker_alone_is_quiet_however_busy_it_is() -> None:
    a = _snap(0.0, {0: (0, 0), 1: (0, 0)})
    b = _snap(2.0, {0: (200, 0), 1: (199, 0)}, worker=399)
    fig = window_figures(a, b, HZ)
    assert fig.other_cpu_pct == 0 and not fig.noisy


def test_threshold_and_tick_allowance() -> None:
    a = _snap(0.0, {0: (0, 0)})
    at_threshold = int(OTHER_CPU_NOISY_PCT) + TICK_ALLOWANCE  # 1 s: ticks of one core = 100
    assert not window_figures(a, _snap(1.0, {0: (at_threshold, 0)}), HZ).noisy
    assert window_figures(a, _snap(1.0, {0: (at_threshold + 1, 0)}), HZ).noisy
    # A very short window: the counters' rounding (a few ticks) must not read as noise.
    assert not window_figures(a, _snap(0.05, {0: (TICK_ALLOWANCE, 0)}), HZ).noisy


def test_steal_is_a_share_of_the_watched_cpus_time() -> None:
    a = _snap(0.0, {0: (0, 0), 1: (0, 0)})
    b = _snap(1.0, {0: (0, 30), 1: (0, 10)})
    fig = window_figures(a, b, HZ)
    assert fig.steal_pct == pytest.approx(20.0)  # 40 of 200 ticks
    assert fig.noisy and fig.other_cpu_pct == 0


def test_a_counter_that_runs_backwards_is_not_negative_noise() -> None:
    a = _snap(0.0, {0: (100, 0)}, worker=50)
    b = _snap(1.0, {0: (110, 0)}, worker=80)  # the worker's ticks moved more than the CPU's (rounding)
    assert window_figures(a, b, HZ).other_cpu_pct == 0


# --- /proc readers on fake trees ---------------------------------------------------------------------------


def test_tree_ticks_follow_descendants_and_survive_reaping(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    fake.proc(100, 1, ticks=10)  # the worker
    fake.proc(101, 100, ticks=5)  # its child
    fake.proc(102, 101, ticks=2)  # grandchild
    fake.proc(200, 1, ticks=999)  # not in the tree
    fake.write()
    proc = ProcFs(fake.root, tmp_path / "sys")
    assert proc.tree_ticks(100) == 17
    # The grandchild exits and is reaped by 101: its ticks move to 101's cutime; the sum is unchanged.
    del fake.procs[102]
    fake.procs[101][4] = 2
    fake.write()
    assert proc.tree_ticks(100) == 17
    assert proc.allowed_cpus(100) == [0, 1]
    assert proc.load1() == pytest.approx(0.5)


def test_throttle_counters_where_exposed(tmp_path: Path) -> None:
    sys_cpu = tmp_path / "sys"
    proc = ProcFs(tmp_path / "proc", sys_cpu)
    assert proc.throttle_count([0, 1]) is None
    for cpu, n in ((0, 3), (1, 4)):
        (sys_cpu / f"cpu{cpu}" / "thermal_throttle").mkdir(parents=True)
        (sys_cpu / f"cpu{cpu}" / "thermal_throttle" / "core_throttle_count").write_text(f"{n}\n")
    assert proc.throttle_count([0, 1]) == 7


def test_tracker_window_on_a_fake_tree(tmp_path: Path) -> None:
    fake = FakeProc(tmp_path / "proc")
    parent, worker, burner = os.getpid(), 4242, 5151
    fake.proc(parent, 1, ticks=100)
    fake.proc(worker, parent, ticks=0, allowed="1")  # the worker may use CPU 1 only
    fake.proc(burner, 1, ticks=0)
    fake.write()
    canary = StubCanary()
    tracker = NoiseTracker(TrackerContext(threads=1), ProcFs(fake.root, tmp_path / "sys"), canary)
    assert tracker.environment()["available"] is True
    tracker.start(worker, "load")
    assert tracker.stop(None) == {}  # no columns for the load window
    tracker.start(worker, "sample")
    t0 = time.monotonic()
    time.sleep(0.2)
    # During the window: CPU 1 busy 40 ticks (worker 15, harness 5, so others 20); CPU 0 (not the worker's)
    # 500 ticks, which must not count; 2 ticks stolen on CPU 1.
    fake.cpus[1] = [40, 2]
    fake.cpus[0] = [500, 0]
    fake.procs[worker][2] = 15
    fake.procs[parent][2] = 105
    fake.running, fake.load = 4, 1.75
    fake.write()
    cols = tracker.stop(None)
    wall = time.monotonic() - t0
    assert cols["other_cpu_pct"] == pytest.approx(100 * 20 / (wall * HZ), rel=0.15)
    assert cols["steal_pct"] == pytest.approx(100 * 2 / (wall * HZ), rel=0.15)
    assert cols["noisy"] is True
    assert cols["procs_running"] == 4 and cols["load1"] == pytest.approx(1.75)
    assert cols["throttle_events"] is None  # not exposed in the fake sysfs
    assert cols["canary_ms_before"] == cols["canary_ms_after"] == 2.5
    assert canary.calls == [[1], [1]]  # the canary ran on the worker's CPU, before and after
    assert cols["quiet_wait_s"] is None  # not asked


def test_no_proc_leaves_the_columns_empty_and_says_why(tmp_path: Path) -> None:
    tracker = NoiseTracker(TrackerContext(threads=1), ProcFs(tmp_path / "absent", tmp_path / "sys"), StubCanary())
    env = tracker.environment()
    assert env["available"] is False and "not present" in env["reason"]
    tracker.start(os.getpid(), "sample")
    cols = tracker.stop(None)
    for name in ("other_cpu_pct", "steal_pct", "load1", "procs_running", "throttle_events", "noisy"):
        assert cols[name] is None, name
    assert cols["canary_ms_before"] == 2.5  # the canary needs no /proc: measured, not guessed


def test_noise_tracker_opens_first() -> None:
    # Its wait and canaries must not fall inside the other trackers' windows (energy, memory).
    assert TRACKERS[0].endswith(":NoiseTracker")


# --- the run's record and line ---------------------------------------------------------------------------


def test_summary_counts_and_the_end_of_run_line(tmp_path: Path) -> None:
    rows = [
        {"status": "ok", "noisy": "true", "other_cpu_pct": "140", "canary_ms_before": "2", "canary_ms_after": "3"},
        {"status": "ok", "noisy": "true", "other_cpu_pct": "120"},
        {"status": "ok", "noisy": "false", "other_cpu_pct": "1"},
        {"status": "error", "noisy": "true"},  # error rows have no speed figures to spoil
        {"status": "ok", "noisy": ""},  # not measured
    ]
    summary = summarise_rows(rows)
    assert (summary.samples, summary.noisy, summary.other_cpu_pct_noisy) == (3, 2, 130.0)
    assert summary.warning().startswith("2 of 3 samples ran while other processes used 130 % of a core")
    pd.DataFrame(rows).to_csv(tmp_path / "results.csv", index=False)
    record: dict = {"environment": {"trackers": {"noise": {"reason": None}}}}
    assert "2 of 3 samples" in (finish_run(tmp_path, record) or "")
    assert record["noise"]["noisy"] == 2 and record["noise"]["canary_ms_median"] == 2.5
    assert summarise_rows(rows[2:]).warning() is None


# --- compare ---------------------------------------------------------------------------------------------


def _with_noise(run_dir: Path, noisy_rows: list[int], canary_ms: float = 2.5) -> Path:
    df = pd.read_csv(run_dir / "results.csv", dtype=str, keep_default_na=False)
    df["noisy"] = ["true" if i in noisy_rows else "false" for i in range(len(df))]
    df["canary_ms_before"] = df["canary_ms_after"] = str(canary_ms)
    df.loc[noisy_rows, "decode_tok_s"] = "1.0"  # what a busy machine does to decode
    df.to_csv(run_dir / "results.csv", index=False)
    return run_dir


def _compare(a: Path, b: Path) -> compare_output.CompareResult:
    return compare_output.build(
        [load_run(a), load_run(b)], ["decode_tok_s", "rougeL_f"], alpha=0.05, threshold_pct=5.0
    )


def test_compare_leaves_noisy_samples_out_of_speed_verdicts(tmp_path: Path) -> None:
    base = _with_noise(make_run(tmp_path, "base", models=("m",), talks=("t1", "t2", "t3"), repeats=3), [])
    new = _with_noise(make_run(tmp_path, "new", models=("m",), talks=("t1", "t2", "t3"), repeats=3, seed=1), [0, 4])
    result = _compare(base, new)
    assert any("new: left 2 noisy sample(s) out of the speed verdicts" in n for n in result.notes)
    decode = next(r for r in result.rows if r.metric == "decode_tok_s")
    assert decode.verdict != "REGRESSION"  # the two 1 tok/s samples are not blamed on the code
    assert (decode.noisy_left_out_baseline, decode.noisy_left_out_new) == (0, 2)
    assert decode.n_new == 7
    rouge = next(r for r in result.rows if r.metric == "rougeL_f")
    assert rouge.noisy_left_out_new == 0 and rouge.n_new == 9  # quality is not a speed figure: kept
    assert json.loads(compare_output.render_json(result))[0]["noisy_left_out_new"] == 2


def test_compare_refuses_speed_verdicts_when_too_few_quiet_samples_remain(tmp_path: Path) -> None:
    base = _with_noise(make_run(tmp_path, "base", models=("m",), talks=("t1", "t2"), repeats=2), [])
    new = _with_noise(make_run(tmp_path, "new", models=("m",), talks=("t1", "t2"), repeats=2), [0, 1, 2])
    result = _compare(base, new)
    refusals = [n for n in result.notes if "too few quiet samples" in n]
    assert len(refusals) == 1 and refusals[0].startswith("new: 3 of 4 samples of m ran while other processes")
    assert "--wait-quiet" in refusals[0] and "\n" not in refusals[0]
    decode = next(r for r in result.rows if r.metric == "decode_tok_s")
    assert decode.verdict == "n/a" and decode.p_value is None and "too few quiet samples in new" in decode.note
    rouge = next(r for r in result.rows if r.metric == "rougeL_f")
    assert rouge.p_value is not None  # quality needs no quiet machine: still judged


def test_compare_warns_when_the_canary_says_the_machines_differ(tmp_path: Path) -> None:
    base = _with_noise(make_run(tmp_path, "base", models=("m",)), [], canary_ms=2.5)
    same = _with_noise(make_run(tmp_path, "same", models=("m",)), [], canary_ms=2.7)
    slow = _with_noise(make_run(tmp_path, "slow", models=("m",)), [], canary_ms=4.0)
    assert not any("canary" in n for n in _compare(base, same).notes)
    line = next(n for n in _compare(base, slow).notes if "canary" in n)
    assert "slow ran on a slower machine" in line and "x1.60" in line


# --- real runs: a burner on the worker's CPUs ----------------------------------------------------------

needs_proc = pytest.mark.skipif(not HAS_PROC, reason="needs Linux /proc and sched_getaffinity")

DUMMY = """\
- id: slow
  backend: dummy
  quant: none
  n_ctx: 4096
  prompt_style: chat
  source: {{kind: path, path: {path}}}
  flags: {{tok_per_s: 50}}
"""
BURN = "import os, sys; os.sched_setaffinity(0, {cpus}); print('go', flush=True)\nwhile True: pass\n"


class Burner:
    """A process spinning one core on the CPUs this process (and so the worker) may use."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", BURN.format(cpus=cpus)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None and self.proc.stdout.readline().strip() == "go"

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture
def burner():
    b = Burner()
    yield b
    b.stop()


def _machine_is_quiet() -> bool:
    """One look at this machine as the tracker sees it, watching this (idle) process."""
    tracker = NoiseTracker(TrackerContext(threads=1), canary=StubCanary())
    tracker.start(os.getpid(), "load")
    time.sleep(1.0)
    tracker.stop(None)
    a = tracker._last_end
    tracker.start(os.getpid(), "load")
    time.sleep(1.0)
    tracker.stop(None)
    b = tracker._last_end
    return a is not None and b is not None and not window_figures(a, b, tracker.hz).noisy


def _run(write_models, model_file: Path, out: Path, echo, **kw) -> Path:
    cfg = RunConfig(
        models=["slow"],
        models_file=write_models(DUMMY.format(path=model_file)),
        out=out,
        talks=["alibaba-qwen", "qualcomm-npu", "ant-codefuse"],
        measure_bandwidth=False,
        max_new_tokens=30,  # 30 tokens at 50 tok/s: a 0.6 s sample, long against a 10 ms clock tick
        warmup=0,
        **kw,
    )
    run_dir, errors = Runner(cfg, echo=echo).run()
    assert errors == 0
    return run_dir


@needs_proc
def test_a_burner_during_part_of_a_run_flags_those_samples(
    write_models, dummy_model_file: Path, tmp_path: Path, burner: Burner
) -> None:
    if not _machine_is_quiet():
        pytest.skip("other processes are busy on this machine: the quiet samples cannot be quiet")
    lines: list[str] = []
    samples = 0

    def echo(line: str) -> None:
        nonlocal samples
        lines.append(line)
        if " tok | ttft " in line:  # a sample's line: written after its window closed
            samples += 1
            if samples == 2:
                burner.start()  # samples 3 and 4 run with it
            elif samples == 4:
                burner.stop()

    run_dir = _run(write_models, dummy_model_file, tmp_path / "noisy", echo, repeats=2)
    df = pd.read_csv(run_dir / "results.csv").sort_values("sample_seq")
    assert df["noisy"].tolist() == [False, False, True, True, False, False], df[["sample_seq", "other_cpu_pct"]]
    assert (df.loc[df["noisy"], "other_cpu_pct"] > OTHER_CPU_NOISY_PCT).all()
    assert df["canary_ms_before"].notna().all() and df["canary_ms_after"].notna().all()
    assert any("2 of 6 samples ran while other processes used" in line for line in lines)
    record = json.loads((run_dir / "run.json").read_text())
    assert record["noise"]["noisy"] == 2 and record["noise"]["samples"] == 6
    assert record["environment"]["trackers"]["noise"]["available"] is True

    quiet_dir = _run(write_models, dummy_model_file, tmp_path / "quiet", lambda _line: None, repeats=2)
    result = compare_output.build(
        [load_run(quiet_dir), load_run(run_dir)], ["decode_tok_s"], alpha=0.05, threshold_pct=5.0
    )
    assert any(f"{run_dir.name}: left 2 noisy sample(s) out of the speed verdicts" in n for n in result.notes)
    assert not pd.read_csv(quiet_dir / "results.csv")["noisy"].any()


@needs_proc
def test_wait_quiet_with_a_burner_ends_by_its_bound_and_records_the_wait(
    write_models, dummy_model_file: Path, tmp_path: Path, burner: Burner
) -> None:
    burner.start()
    bound = 0.8
    run_dir = _run(write_models, dummy_model_file, tmp_path, lambda _line: None, wait_quiet_s=bound)
    df = pd.read_csv(run_dir / "results.csv")
    assert (df["quiet_wait_s"] >= bound).all(), df["quiet_wait_s"]
    assert (df["quiet_wait_s"] < bound + 2 * QUIET_LOOK_S + 0.5).all(), df["quiet_wait_s"]  # bounded
    assert df["noisy"].all()


@needs_proc
def test_wait_quiet_without_a_burner_waits_about_nothing() -> None:
    if not _machine_is_quiet():
        pytest.skip("other processes are busy on this machine: it cannot be seen quiet")
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tracker = NoiseTracker(TrackerContext(threads=1, wait_quiet_s=10.0), canary=StubCanary())
        tracker.start(sleeper.pid, "sample")
        cols = tracker.stop(None)
        assert cols["quiet_wait_s"] <= QUIET_LOOK_S + 0.2  # one look, no more
        time.sleep(QUIET_LOOK_S)  # the gap since the last sample is the look: no wait at all
        tracker.start(sleeper.pid, "sample")
        assert tracker.stop(None)["quiet_wait_s"] < 0.1
    finally:
        sleeper.kill()
        sleeper.wait()
