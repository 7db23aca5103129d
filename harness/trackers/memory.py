"""Memory of the worker process, observed from the parent.

On Linux the peak comes from the kernel: its exact high-water mark of the worker's RSS (VmHWM in
/proc/PID/status), reset before each sample through /proc/PID/clear_refs ("5") and read after it. Polling
is then only a cross-check, so it runs rarely (every 1 s by default): each wake of the sampler thread
takes a core for ~0.1 ms, and when the engine runs as many threads as there are cores, llama.cpp's
threads meet at a barrier after every operation -- one preempted thread stalls all of them, so 100 Hz
polling measurably slowed decode on a 2-core machine. Where VmHWM cannot be reset (other systems, old
kernels), the parent polls RSS (/proc/PID/statm or psutil) every 10 ms and the peak is the polled maximum,
which can miss a spike shorter than the interval. `interval_s` overrides either default. USS/PSS need a
walk of /proc/PID/smaps, so they are read once at the end of each sample.

The sampler's own CPU time (`cpu_s`) and poll count are recorded in run.json so its cost is visible.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from harness.trackers.base import Phase, Tracker, TrackerContext, TrackerReport

if TYPE_CHECKING:
    from harness.scenarios.base import SampleResult

MIB = 1024 * 1024


@dataclass(frozen=True)
class MemoryWindow:
    """Peak memory over one window (a sample, or a model load), in MiB."""

    peak_rss_mb: float | None
    polled_peak_rss_mb: float | None
    hwm_rss_mb: float | None  # kernel high-water mark, Linux only
    uss_mb: float | None
    pss_mb: float | None
    polls: int

    def __str__(self) -> str:
        peak = "-" if self.peak_rss_mb is None else f"{self.peak_rss_mb:.1f}"
        uss = "" if self.uss_mb is None else f", USS {self.uss_mb:.1f}"
        return f"peak RSS {peak} MiB ({self.polls} polls{uss})"


def read_hwm_bytes(pid: int) -> int | None:
    """VmHWM (peak RSS since start or last reset) from /proc, or None off Linux."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def reset_hwm(pid: int) -> bool:
    """Reset the kernel's peak-RSS counter of `pid` (Linux >= 4.0). False when unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


POLL_INTERVAL_WITH_HWM_S = 1.0  # VmHWM gives the exact peak; polls only cross-check it
POLL_INTERVAL_WITHOUT_HWM_S = 0.01  # the polled maximum is the peak


def hwm_resettable(pid: int) -> bool:
    """Whether the kernel's peak-RSS counter of `pid` can be read and reset (Linux >= 4.0, same user)."""
    return (
        sys.platform.startswith("linux")
        and read_hwm_bytes(pid) is not None
        and os.access(f"/proc/{pid}/clear_refs", os.W_OK)
    )


class MemorySampler:
    """Polls one process's RSS in a background thread; `start_window`/`end_window` bracket a sample.

    `interval_s` None picks the poll interval: 1 s where the kernel's VmHWM gives the exact peak, else
    10 ms. The interval used is `interval_s` after construction, and `hwm` says whether VmHWM is used.
    """

    def __init__(self, pid: int, interval_s: float | None = None) -> None:
        self.pid = pid
        self.hwm = hwm_resettable(pid)
        if interval_s is None:
            interval_s = POLL_INTERVAL_WITH_HWM_S if self.hwm else POLL_INTERVAL_WITHOUT_HWM_S
        self.interval_s = float(interval_s)
        self._proc = psutil.Process(pid)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._window_peak = 0
        self._window_polls = 0
        self._hwm_reset = False
        self._fd: int | None = None
        self.polls = 0
        self.cpu_s = 0.0  # CPU time spent by the sampler thread itself

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)

    def _rss_reader(self) -> Callable[[], int]:
        """Cheapest RSS read available: on Linux, pread() of /proc/PID/statm through a descriptor kept
        open (psutil re-opens the file on every call, doubling the sampler's CPU cost); elsewhere psutil."""
        try:
            fd = os.open(f"/proc/{self.pid}/statm", os.O_RDONLY)
        except OSError:
            return lambda: self._proc.memory_info().rss
        self._fd = fd
        page = os.sysconf("SC_PAGE_SIZE")
        return lambda: int(os.pread(fd, 128, 0).split()[1]) * page

    def _loop(self) -> None:
        cpu0 = time.thread_time()
        read_rss = self._rss_reader()
        while not self._stop.is_set():
            try:
                rss = read_rss()
            except (OSError, ValueError, IndexError, psutil.Error):
                break  # the worker is gone
            with self._lock:
                self.polls += 1
                self._window_polls += 1
                self._window_peak = max(self._window_peak, rss)
            self.cpu_s = time.thread_time() - cpu0
            if self.interval_s >= 0.1:
                self._stop.wait(self.interval_s)  # long waits: stop() must not wait them out
            else:
                # Plain sleep: cheaper to wake from than Event.wait (measured ~80 vs ~120 us CPU per wake
                # here), and stop() waits at most one interval.
                time.sleep(self.interval_s)
        self.cpu_s = time.thread_time() - cpu0
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def current_rss_mb(self) -> float | None:
        try:
            return self._proc.memory_info().rss / MIB
        except psutil.Error:
            return None

    def start_window(self) -> None:
        with self._lock:
            self._window_peak = 0
            self._window_polls = 0
        self._hwm_reset = reset_hwm(self.pid)
        with contextlib.suppress(psutil.Error), self._lock:
            self._window_peak = self._proc.memory_info().rss

    def end_window(self, full_info: bool = True) -> MemoryWindow:
        uss = pss = None
        with contextlib.suppress(psutil.Error), self._lock:
            self._window_peak = max(self._window_peak, self._proc.memory_info().rss)
        if full_info:
            try:
                full = self._proc.memory_full_info()
                uss = full.uss / MIB
                pss = getattr(full, "pss", None)
                pss = pss / MIB if pss is not None else None
            except (psutil.Error, AttributeError):
                pass
        hwm = read_hwm_bytes(self.pid) if self._hwm_reset else None
        with self._lock:
            polled = self._window_peak or None
            polls = self._window_polls
        candidates = [v for v in (polled, hwm) if v]
        return MemoryWindow(
            peak_rss_mb=max(candidates) / MIB if candidates else None,
            polled_peak_rss_mb=polled / MIB if polled else None,
            hwm_rss_mb=hwm / MIB if hwm else None,
            uss_mb=uss,
            pss_mb=pss,
            polls=polls,
        )


class MemoryTracker(Tracker):
    """The Tracker face of `MemorySampler`: one sampler thread per watched process, a window per phase.

    Load window: RSS before and right after the model load (`rss_before_load_mb`, `rss_after_load_mb`)
    and the load's peak (run.json). Sample window: `peak_rss_mb`, and USS/PSS at the end of the sample.
    """

    name = "memory"
    columns = ("rss_before_load_mb", "rss_after_load_mb", "peak_rss_mb", "uss_mb", "pss_mb")

    def __init__(self, context: TrackerContext) -> None:
        super().__init__(context)
        self._sampler: MemorySampler | None = None
        self._phase: Phase = "sample"
        self._rss_before: float | None = None
        self._load_peak: float | None = None

    def start(self, pid: int, phase: Phase) -> None:
        if self._sampler is None or self._sampler.pid != pid:
            self._release()
            self._sampler = MemorySampler(pid, interval_s=self.context.sample_interval_s)
            self._sampler.__enter__()
        self._phase = phase
        if phase == "load":
            self._rss_before = self._sampler.current_rss_mb()
        self._sampler.start_window()

    def stop(self, result: SampleResult | None = None) -> dict[str, Any]:
        assert self._sampler is not None, "stop() before start()"
        if self._phase == "load":
            window = self._sampler.end_window(full_info=False)
            self._load_peak = window.peak_rss_mb
            return {"rss_before_load_mb": self._rss_before, "rss_after_load_mb": self._sampler.current_rss_mb()}
        window = self._sampler.end_window()
        return {"peak_rss_mb": window.peak_rss_mb, "uss_mb": window.uss_mb, "pss_mb": window.pss_mb}

    def _release(self) -> dict[str, Any]:
        if self._sampler is None:
            return {}
        self._sampler.stop()
        sampler = self._sampler
        cost = {"polls": sampler.polls, "cpu_s": round(sampler.cpu_s, 4), "interval_s": sampler.interval_s}
        self._sampler = None
        return cost

    def close(self) -> TrackerReport:
        cost = self._release()
        record: dict[str, Any] = {"load_peak_rss_mb": self._load_peak}
        if cost:
            record["sampler"] = cost
        return TrackerReport(record=record)
