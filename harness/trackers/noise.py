"""System noise around each sample: how busy the machine was while the worker ran, and how fast it was.

A benchmark on a laptop, a phone or a shared CI runner is rarely alone. This tracker observes each sample
window from the parent (nothing runs in the worker) and fills, per row:

- `other_cpu_pct`: CPU time that processes *other than the worker* used on the CPUs the worker may run on
  (its `Cpus_allowed_list`), in % of one core: the busy ticks of those CPUs in `/proc/stat` (user, nice,
  system, irq, softirq) minus the worker's own ticks -- `/proc/<pid>/stat` utime + stime + cutime + cstime,
  summed over the worker and every descendant process, so a server's runner processes count as the worker
  -- minus the harness parent's own utime + stime (its tracker threads, scoring, writing: the harness is
  not "other"; what it costs is measured by tests/benchmarks/test_bench_noise.py).
- `steal_pct`: time the hypervisor gave those CPUs to other guests, in % of their time (VMs).
- `load1` (`/proc/loadavg`) and `procs_running` (`/proc/stat`, the reader included) at the window's end.
- `throttle_events`: thermal throttle events on those CPUs during the window
  (`/sys/devices/system/cpu/cpu*/thermal_throttle/*_throttle_count`; empty where not exposed). The CPU
  frequency is the device tracker's `cpu_mhz_start` / `cpu_mhz_end`.
- `noisy`: true when other processes used more than `OTHER_CPU_NOISY_PCT` % of a core during the window
  (after allowing `TICK_ALLOWANCE` clock ticks of counting granularity), or steal exceeded
  `STEAL_NOISY_PCT` %. Thresholds and the figures they come from: docs/noise.md.
- `canary_ms_before` / `canary_ms_after`: a fixed-work probe (a numpy copy of `CANARY_MB` MiB, best of
  `CANARY_REPEATS`) on the worker's CPUs right before and after the sample. It shows a machine that changed
  speed -- a VM whose host got busy shows no steal and no other process, only slower memory and cores.
- `quiet_wait_s`: with `--wait-quiet[=SECONDS]`, how long the sample waited (at most SECONDS) for the
  machine to be quiet for one `QUIET_LOOK_S` look; empty when not asked.

Window order: this tracker is first in `harness.trackers.TRACKERS` and the session closes windows in
reverse, so the wait and the canaries run outside every other tracker's window (energy, memory).

Without `/proc` (macOS, Windows) the /proc columns are empty and run.json `environment.trackers.noise`
says why; never a guess. The canary needs no /proc and is measured everywhere.
"""

from __future__ import annotations

import csv
import functools
import os
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from harness.trackers.base import Phase, Tracker, TrackerContext

if TYPE_CHECKING:
    from harness.report.load import Run
    from harness.scenarios.base import SampleResult

PROC_ROOT_ENV = "HARNESS_PROC_ROOT"  # tests point these at fake trees
SYS_CPU_ROOT_ENV = "HARNESS_SYS_CPU_ROOT"
DEFAULT_PROC_ROOT = "/proc"
DEFAULT_SYS_CPU_ROOT = "/sys/devices/system/cpu"

# Thresholds (docs/noise.md has the figures behind them, measured on the project's 2-core VM).
OTHER_CPU_NOISY_PCT = 25.0  # % of one core used by other processes on the worker's CPUs
STEAL_NOISY_PCT = 10.0  # % of the worker's CPUs' time stolen by the hypervisor
TICK_ALLOWANCE = 3  # clock ticks: per-CPU and per-process counters are rounded to ticks separately
QUIET_LOOK_S = 0.3  # --wait-quiet: the machine must be quiet over one look this long
CANARY_MB = 16  # 16 MiB copied (32 MiB of traffic): ~2-3 ms here, past the caches' sweet spot
CANARY_REPEATS = 3
CANARY_FACTOR = 1.25  # compare warns when two runs' canary medians differ by more than this factor
MIN_QUIET_SHARE = 0.5  # compare refuses speed verdicts when fewer of a model's samples are quiet

NOISE_COLUMNS: tuple[str, ...] = (
    "other_cpu_pct",
    "steal_pct",
    "load1",
    "procs_running",
    "throttle_events",
    "canary_ms_before",
    "canary_ms_after",
    "quiet_wait_s",
    "noisy",
)


# --- reading /proc and /sys --------------------------------------------------------------------------


def parse_cpu_list(text: str) -> list[int]:
    """`0-3,6` -> [0, 1, 2, 3, 6] (the kernel's list format, as in Cpus_allowed_list)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


@dataclass(frozen=True)
class StatReading:
    """/proc/stat: per CPU (busy ticks, steal ticks), and the instantaneous run queue."""

    cpus: dict[int, tuple[int, int]]
    procs_running: int | None


def parse_proc_stat(text: str) -> StatReading:
    cpus: dict[int, tuple[int, int]] = {}
    running = None
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0].startswith("cpu") and parts[0] != "cpu":
            v = [int(x) for x in parts[1:]] + [0] * 10
            # user nice system idle iowait irq softirq steal guest guest_nice; guest is already in user.
            busy = v[0] + v[1] + v[2] + v[5] + v[6]
            cpus[int(parts[0][3:])] = (busy, v[7])
        elif parts[0] == "procs_running" and len(parts) > 1:
            running = int(parts[1])
    return StatReading(cpus, running)


def parse_pid_stat(text: str) -> tuple[int, int, int]:
    """/proc/<pid>/stat -> (ppid, own ticks utime + stime, reaped children's ticks cutime + cstime).
    The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'."""
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
    return int(rest[1]), int(rest[11]) + int(rest[12]), int(rest[13]) + int(rest[14])


class ProcFs:
    """The files this tracker reads, under roots that tests replace with fake trees."""

    def __init__(self, root: Path | None = None, sys_cpu: Path | None = None) -> None:
        self.root = root or Path(os.environ.get(PROC_ROOT_ENV, DEFAULT_PROC_ROOT))
        self.sys_cpu = sys_cpu or Path(os.environ.get(SYS_CPU_ROOT_ENV, DEFAULT_SYS_CPU_ROOT))

    def unavailable(self) -> str | None:
        """Why the /proc figures cannot be taken here (None when they can)."""
        stat = self.root / "stat"
        if not stat.is_file():
            return f"{stat} not present (no Linux /proc on this system): the /proc noise columns are empty"
        try:
            reading = parse_proc_stat(stat.read_text())
            self.pid_stat(os.getpid())
        except (OSError, ValueError, IndexError) as exc:
            return f"cannot read {self.root}: {exc}"
        if not reading.cpus:
            return f"{stat} has no per-CPU lines"
        return None

    def stat(self) -> StatReading:
        return parse_proc_stat((self.root / "stat").read_text())

    def pid_stat(self, pid: int) -> tuple[int, int, int]:
        return parse_pid_stat((self.root / str(pid) / "stat").read_text())

    def tree(self, pid: int) -> list[int]:
        """`pid` and its descendants (a scan of every /proc/<pid>/stat for parent links: this kernel interface
        has no cheaper one everywhere, /proc/<pid>/task/<tid>/children needs CONFIG_PROC_CHILDREN)."""
        children: dict[int, list[int]] = {}
        root = str(self.root)
        for name in os.listdir(root):
            if not name.isdigit():
                continue
            try:
                with open(f"{root}/{name}/stat", "rb") as fh:  # plain bytes: this loop reads every process
                    data = fh.read()
                ppid = int(data[data.rindex(b")") + 2 :].split(None, 2)[1])
            except (OSError, ValueError, IndexError):
                continue  # exited while the table was read
            children.setdefault(ppid, []).append(int(name))
        out, todo = [], [pid]
        while todo:
            p = todo.pop()
            if p not in out:
                out.append(p)
                todo.extend(children.get(p, []))
        return out

    def ticks(self, pids: Iterable[int]) -> int:
        """CPU ticks of these processes, own + reaped children's. Summed over a process tree this is unchanged
        when a child in the tree is reaped (its ticks move to its parent's cutime); a process gone counts 0."""
        total = 0
        for pid in pids:
            try:
                _ppid, own, reaped = self.pid_stat(pid)
            except (OSError, ValueError, IndexError):
                continue
            total += own + reaped
        return total

    def tree_ticks(self, pid: int) -> int:
        return self.ticks(self.tree(pid))

    def allowed_cpus(self, pid: int) -> list[int] | None:
        try:
            for line in (self.root / str(pid) / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    return parse_cpu_list(line.split(":", 1)[1])
        except (OSError, ValueError):
            return None
        return None

    def load1(self) -> float | None:
        try:
            return float((self.root / "loadavg").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def throttle_count(self, cpus: Iterable[int]) -> int | None:
        """Thermal throttle events so far on `cpus` (core + package counters); None where not exposed."""
        total, found = 0, False
        for cpu in cpus:
            folder = self.sys_cpu / f"cpu{cpu}" / "thermal_throttle"
            for name in ("core_throttle_count", "package_throttle_count"):
                try:
                    total += int((folder / name).read_text().strip())
                    found = True
                except (OSError, ValueError):
                    continue
        return total if found else None


# --- one window --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    t: float  # time.monotonic()
    cpus: dict[int, tuple[int, int]]  # the watched CPUs only: (busy, steal) ticks
    worker_ticks: int
    parent_ticks: int
    procs_running: int | None
    throttle: int | None


@dataclass(frozen=True)
class WindowFigures:
    wall_s: float
    other_ticks: int
    other_cpu_pct: float
    steal_pct: float
    noisy: bool


def window_figures(a: Snapshot, b: Snapshot, hz: float) -> WindowFigures:
    """What other processes and the hypervisor took from the watched CPUs between two snapshots."""
    wall = max(b.t - a.t, 1e-9)
    cpus = [c for c in b.cpus if c in a.cpus]
    busy = sum(b.cpus[c][0] - a.cpus[c][0] for c in cpus)
    steal = sum(b.cpus[c][1] - a.cpus[c][1] for c in cpus)
    other = busy - (b.worker_ticks - a.worker_ticks) - (b.parent_ticks - a.parent_ticks)
    capacity = wall * hz  # ticks of one core over the window
    other_pct = 100.0 * max(other, 0) / capacity
    steal_pct = 100.0 * max(steal, 0) / (capacity * max(len(cpus), 1))
    noisy = (other - TICK_ALLOWANCE) > OTHER_CPU_NOISY_PCT / 100.0 * capacity or steal_pct > STEAL_NOISY_PCT
    return WindowFigures(wall, other, other_pct, steal_pct, noisy)


# --- the canary --------------------------------------------------------------------------------------


class Canary:
    """A fixed amount of work -- copy CANARY_MB MiB with numpy, best of CANARY_REPEATS -- timed on the
    given CPUs (this thread pinned there for the probe). Buffers are made and faulted in on first use."""

    def __init__(self, size_mb: int = CANARY_MB, repeats: int = CANARY_REPEATS) -> None:
        self.size_mb, self.repeats = size_mb, repeats
        self._src: np.ndarray | None = None
        self._dst: np.ndarray | None = None

    def run_ms(self, cpus: list[int] | None) -> float:
        if self._src is None or self._dst is None:
            self._src = np.ones(self.size_mb * 1024 * 1024 // 8, dtype=np.float64)
            self._dst = np.empty_like(self._src)
            np.copyto(self._dst, self._src)
        pinned = _pin(cpus)
        try:
            best = float("inf")
            for _ in range(self.repeats):
                t0 = time.perf_counter()
                np.copyto(self._dst, self._src)
                best = min(best, time.perf_counter() - t0)
        finally:
            if pinned is not None:
                os.sched_setaffinity(0, pinned)
        return best * 1e3


def _pin(cpus: list[int] | None) -> set[int] | None:
    """Pin this thread to `cpus`; the previous set to restore, or None when nothing was changed."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        before = os.sched_getaffinity(0)
        if before == set(cpus):
            return None
        os.sched_setaffinity(0, cpus)
        return before
    except OSError:
        return None


# --- the tracker -------------------------------------------------------------------------------------


class NoiseTracker(Tracker):
    name = "noise"
    columns = NOISE_COLUMNS

    def __init__(self, context: TrackerContext, proc: ProcFs | None = None, canary: Canary | None = None) -> None:
        super().__init__(context)
        self.proc = proc or ProcFs()
        self.reason = self.proc.unavailable()
        self.hz = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0
        self.canary = canary or Canary()
        self._pid: int | None = None
        self._cpus: list[int] | None = None
        self._start: Snapshot | None = None
        self._last_end: Snapshot | None = None  # the previous window's end: the gap since is a quiet look
        self._canary_before: float | None = None
        self._waited: float | None = None
        self._phase: Phase = "load"
        self._tree: list[int] = []

    def environment(self) -> dict[str, Any]:
        return {
            "available": self.reason is None,
            "reason": self.reason,
            "clock_ticks_hz": self.hz,
            "other_cpu": "watched CPUs' busy ticks (/proc/stat) - worker process tree - harness parent's own",
            "thresholds": {
                "other_cpu_pct": OTHER_CPU_NOISY_PCT,
                "steal_pct": STEAL_NOISY_PCT,
                "tick_allowance": TICK_ALLOWANCE,
            },
            "throttle_counters": None
            if self.reason
            else ("exposed" if self.proc.throttle_count([0]) is not None else "not exposed"),
            "canary": f"numpy copy of {CANARY_MB} MiB, best of {CANARY_REPEATS}, on the worker's CPUs",
            "wait_quiet_s": self.context.wait_quiet_s,
            "quiet_look_s": QUIET_LOOK_S,
        }

    # -- snapshots ----------------------------------------------------------------------------------------
    def _snapshot(self) -> Snapshot | None:
        if self.reason is not None or self._pid is None:
            return None
        try:
            stat = self.proc.stat()
            cpus = self._cpus or sorted(stat.cpus)
            return Snapshot(
                t=time.monotonic(),
                cpus={c: stat.cpus[c] for c in cpus if c in stat.cpus},
                worker_ticks=self.proc.ticks(self._tree),
                # In-process (tests): the watched tree is this process, already counted as the worker.
                parent_ticks=0 if self._pid == os.getpid() else self.proc.pid_stat(os.getpid())[1],
                procs_running=stat.procs_running,
                throttle=self.proc.throttle_count(cpus),
            )
        except (OSError, ValueError, IndexError):
            return None

    def _quiet(self, a: Snapshot | None, b: Snapshot | None) -> bool:
        return a is None or b is None or not window_figures(a, b, self.hz).noisy

    def wait_quiet(self, bound_s: float) -> float:
        """Wait until one QUIET_LOOK_S look finds the machine quiet, at most `bound_s`; the seconds waited.
        The gap since the previous window closed counts as (the start of) the first look."""
        t0 = time.monotonic()
        a = self._last_end
        if a is None or t0 - a.t > 10 * QUIET_LOOK_S:  # an old snapshot says little about now
            a = self._snapshot()
        while True:
            left = QUIET_LOOK_S - (time.monotonic() - a.t) if a is not None else 0.0
            remaining = bound_s - (time.monotonic() - t0)
            if left > 0:
                time.sleep(max(0.0, min(left, remaining)))
            b = self._snapshot()
            if self._quiet(a, b) or time.monotonic() - t0 >= bound_s:
                return time.monotonic() - t0
            a = b

    # -- the window ----------------------------------------------------------------------------------------
    def start(self, pid: int, phase: Phase) -> None:
        if self._pid != pid:
            self._pid, self._last_end = pid, None
            self._cpus = self.proc.allowed_cpus(pid) if self.reason is None else None
            if self._cpus is None and hasattr(os, "sched_getaffinity"):
                try:
                    self._cpus = sorted(os.sched_getaffinity(pid))
                except OSError:
                    self._cpus = None
        self._waited = self._canary_before = None
        if self.reason is None:
            # The worker's process tree, found once per window (a scan of /proc, outside the timed window);
            # a process it starts mid-sample is missed until the next window -- rare, and it errs towards noisy.
            self._tree = self.proc.tree(pid)
        if phase == "sample":
            if self.context.wait_quiet_s is not None:
                self._waited = self.wait_quiet(self.context.wait_quiet_s)
            self._canary_before = self.canary.run_ms(self._cpus)
        self._start = self._snapshot()
        self._phase = phase

    def stop(self, result: SampleResult | None = None) -> dict[str, Any]:
        end = self._snapshot()
        start, self._start = self._start, None
        if self._phase != "sample":
            self._last_end = end
            return {}
        figures = window_figures(start, end, self.hz) if start is not None and end is not None else None
        cols: dict[str, Any] = {
            "other_cpu_pct": round(figures.other_cpu_pct, 2) if figures else None,
            "steal_pct": round(figures.steal_pct, 2) if figures else None,
            "load1": self.proc.load1() if end is not None else None,
            "procs_running": end.procs_running if end is not None else None,
            "throttle_events": end.throttle - start.throttle
            if start is not None and end is not None and start.throttle is not None and end.throttle is not None
            else None,
            "canary_ms_before": _round(self._canary_before),
            "canary_ms_after": _round(self.canary.run_ms(self._cpus)),
            "quiet_wait_s": _round(self._waited),
            "noisy": figures.noisy if figures else None,
        }
        # The gap to the next sample starts after the canary: the canary is the harness's own work.
        self._last_end = self._snapshot()
        return cols


def _round(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(v, digits)


# --- the run's record (run.json `noise`) and its end-of-run line -------------------------------------


def _flag(value: Any) -> bool | None:
    text = str(value).strip().lower()
    return True if text in ("true", "1", "1.0") else False if text in ("false", "0", "0.0") else None


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return None if v != v else v


@dataclass
class NoiseSummary:
    samples: int = 0  # ok samples with a noisy verdict
    noisy: int = 0
    other_cpu_pct_noisy: float | None = None  # median over the noisy samples
    steal_pct_noisy: float | None = None
    canary_ms: float | None = None  # median over all ok samples, before and after
    reason: str | None = None

    def record(self) -> dict[str, Any]:
        """run.json `noise`, through its typed record."""
        from harness.results.record import NoiseRecord, to_dict

        return to_dict(
            NoiseRecord(
                samples=self.samples,
                noisy=self.noisy,
                other_cpu_pct_noisy_median=self.other_cpu_pct_noisy,
                canary_ms_median=self.canary_ms,
                threshold_other_cpu_pct=OTHER_CPU_NOISY_PCT,
                threshold_steal_pct=STEAL_NOISY_PCT,
                unavailable=self.reason,
            )
        )

    def warning(self) -> str | None:
        if not self.noisy:
            return None
        causes = []
        if self.other_cpu_pct_noisy is not None and self.other_cpu_pct_noisy > OTHER_CPU_NOISY_PCT:
            causes.append(f"other processes used {self.other_cpu_pct_noisy:.0f} % of a core")
        if self.steal_pct_noisy is not None and self.steal_pct_noisy > STEAL_NOISY_PCT:
            causes.append(f"the hypervisor stole {self.steal_pct_noisy:.0f} % of the CPUs' time")
        return (
            f"{self.noisy} of {self.samples} samples ran while {' and '.join(causes) or 'the machine was busy'} "
            "(median of those samples); their speed figures are not representative (column `noisy`; "
            "`--wait-quiet` waits for a quiet machine before each sample)"
        )


def summarise_rows(rows: Iterable[dict[str, Any]], reason: str | None = None) -> NoiseSummary:
    out = NoiseSummary(reason=reason)
    other, steal, canary = [], [], []
    for row in rows:
        if str(row.get("status", "")).strip().lower() != "ok":
            continue
        canary += [v for v in (_num(row.get("canary_ms_before")), _num(row.get("canary_ms_after"))) if v is not None]
        flag = _flag(row.get("noisy"))
        if flag is None:
            continue
        out.samples += 1
        if flag:
            out.noisy += 1
            if (pct := _num(row.get("other_cpu_pct"))) is not None:
                other.append(pct)
            if (pct := _num(row.get("steal_pct"))) is not None:
                steal.append(pct)
    out.other_cpu_pct_noisy = round(statistics.median(other), 1) if other else None
    out.steal_pct_noisy = round(statistics.median(steal), 1) if steal else None
    out.canary_ms = round(statistics.median(canary), 3) if canary else None
    return out


def summarise_run(run_dir: Path, unavailable: str | None = None) -> NoiseSummary:
    """At the end of a run: the noisy samples of its results.csv (run.json `noise`; `warning()` is the
    busy-machine line). `unavailable`: why this machine has no /proc columns. Never raises: a run must
    finalise whatever this finds."""
    try:
        with (run_dir / "results.csv").open(newline="", encoding="utf-8") as fh:
            return summarise_rows(csv.DictReader(fh), unavailable)
    except (OSError, ValueError, csv.Error) as exc:
        return NoiseSummary(reason=f"results.csv not readable: {exc}")


def finish_run(run_dir: Path, record: dict[str, Any]) -> str | None:
    """`summarise_run` into a run.json dict's `noise`; the warning line (None when no sample was noisy)."""
    env = ((record.get("environment") or {}).get("trackers") or {}).get("noise") or {}
    summary = summarise_run(run_dir, env.get("reason"))
    record["noise"] = summary.record()
    return summary.warning()


# --- compare: noisy rows out of speed verdicts; the canary across runs -------------------------------


@functools.cache
def speed_metrics() -> frozenset[str]:
    """Metrics the machine's load moves: measured (not a function of the text), with a direction, not
    memory. Latency, rates, energy, the roofline share."""
    from harness.results.schema import COLUMN_SPECS

    return frozenset(
        c.name
        for c in COLUMN_SPECS
        if c.kind == "metric" and c.better and not c.deterministic and c.unit != "MiB" and c.name not in NOISE_COLUMNS
    )


def noisy_flags(df: pd.DataFrame) -> pd.Series:
    """Per row: True where the run flagged the sample noisy (False where quiet or not recorded)."""
    if "noisy" not in df.columns:
        return pd.Series(False, index=df.index)
    return df["noisy"].map(lambda v: _flag(v) is True).astype(bool)


@dataclass
class LeftOut:
    """What `leave_out_noisy` did: the runs with noisy speed cells blanked, notes, counts per (run, model),
    and the (run, model) pairs whose speed is not judged at all (too few quiet samples)."""

    runs: list[Run]
    notes: list[str] = field(default_factory=list)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    refused: set[tuple[str, str]] = field(default_factory=set)

    def note_for(self, baseline: str, other: str, model: str) -> str:
        """The verdict note of a speed metric of `model` that is not judged; '' when it is."""
        where = [label for label in (baseline, other) if (label, model) in self.refused]
        return f"not judged: too few quiet samples in {', '.join(where)} (noisy)" if where else ""


def leave_out_noisy(runs: Sequence[Run], metrics: Sequence[str]) -> LeftOut:
    """Blank the speed metrics of noisy ok rows, so means, tests and verdicts use quiet samples only. Where
    fewer than MIN_QUIET_SHARE of a model's ok samples are quiet, its speed is not judged at all (every
    speed cell blanked, one note line): a verdict from the few quiet samples left would be a guess."""
    speed = [m for m in metrics if m in speed_metrics()]
    out = LeftOut(runs=list(runs))
    if not speed:
        return out
    for i, run in enumerate(runs):
        ok = run.results["status"] == "ok"
        noisy = noisy_flags(run.results) & ok
        if not noisy.any():
            continue
        blank = noisy.copy()
        for model in sorted(set(run.results.loc[noisy, "model"].astype(str))):
            mine = run.results["model"].astype(str) == model
            n_ok, n_noisy = int((ok & mine).sum()), int((noisy & mine).sum())
            out.counts[(run.label, model)] = n_noisy
            if n_ok - n_noisy < MIN_QUIET_SHARE * n_ok:
                out.refused.add((run.label, model))
                blank |= mine
                out.notes.append(
                    f"{run.label}: {n_noisy} of {n_ok} samples of {model} ran while other processes were busy "
                    f"(noisy): too few quiet samples, so its speed metrics are not judged; rerun on a quiet "
                    "machine (`harness run --wait-quiet` waits for one)"
                )
        results = run.results.copy()
        results.loc[blank, [m for m in speed if m in results.columns]] = np.nan
        out.runs[i] = replace(run, results=results)
        out.notes.append(
            f"{run.label}: left {int(noisy.sum())} noisy sample(s) out of the speed verdicts "
            f"({', '.join(speed)}): other processes used > {OTHER_CPU_NOISY_PCT:g} % of a core during them "
            "(column `noisy`)"
        )
    return out


def canary_median(run: Run) -> float | None:
    ok = run.ok
    values = [
        v for col in ("canary_ms_before", "canary_ms_after") if col in ok.columns
        for v in pd.to_numeric(ok[col], errors="coerce").dropna().tolist()
    ]
    return statistics.median(values) if values else None


def canary_warning(baseline: Run, other: Run, factor: float = CANARY_FACTOR) -> str | None:
    """One line when the runs' canary medians differ by more than `factor`: the machines ran at different
    speeds, so a speed change between them may be the machine's, not the code's."""
    a, b = canary_median(baseline), canary_median(other)
    if a is None or b is None or a <= 0 or b <= 0:
        return None
    ratio = max(a, b) / min(a, b)
    if ratio <= factor:
        return None
    slower = other.label if b > a else baseline.label
    return (
        f"WARNING: the canary (a fixed {CANARY_MB} MiB copy before and after each sample) took {b:.2f} ms in "
        f"{other.label} vs {a:.2f} ms in {baseline.label} (median, x{ratio:.2f} > x{factor:g}): {slower} ran "
        "on a slower machine (or one whose host was busy); speed changes between these runs may be the "
        "machine's, not the code's"
    )


__all__ = [
    "CANARY_FACTOR",
    "MIN_QUIET_SHARE",
    "NOISE_COLUMNS",
    "OTHER_CPU_NOISY_PCT",
    "STEAL_NOISY_PCT",
    "Canary",
    "NoiseSummary",
    "NoiseTracker",
    "ProcFs",
    "Snapshot",
    "WindowFigures",
    "canary_warning",
    "finish_run",
    "leave_out_noisy",
    "noisy_flags",
    "parse_cpu_list",
    "parse_pid_stat",
    "parse_proc_stat",
    "speed_metrics",
    "summarise_rows",
    "summarise_run",
    "window_figures",
]
