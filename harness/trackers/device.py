"""Device state around each sample: CPU frequency, temperature, and the machine's memory bandwidth.

Frequency and temperature come from psutil and are None where the OS does not expose them (many VMs,
macOS for temperature). Bandwidth is measured once per run with a large numpy array copy, for the
roofline estimate: decode on small models is memory-bound, each token streams ~all weight bytes, so
decode_tok_s * weight_bytes / bandwidth approximates how close decode runs to the memory roofline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from harness.trackers.base import Phase, Tracker, TrackerContext, TrackerReport

if TYPE_CHECKING:
    from harness.scenarios.base import SampleResult


@dataclass(frozen=True)
class DeviceState:
    cpu_mhz: float | None
    temp_c: float | None

    @classmethod
    def read(cls) -> DeviceState:
        mhz = None
        try:
            freqs = psutil.cpu_freq(percpu=True) or []
            current = [f.current for f in freqs if f.current]
            mhz = sum(current) / len(current) if current else None
        except (AttributeError, NotImplementedError, OSError):
            mhz = None
        temp = None
        try:
            sensors = psutil.sensors_temperatures() if hasattr(psutil, "sensors_temperatures") else {}
            readings = [t.current for entries in sensors.values() for t in entries if t.current]
            temp = max(readings) if readings else None
        except (AttributeError, OSError):
            temp = None
        return cls(cpu_mhz=mhz, temp_c=temp)


def throttling_suspected(starts: list[float | None], ends: list[float | None], drop: float = 0.10) -> bool:
    """True when CPU frequency fell by more than `drop` (fraction) from its highest reading across samples."""
    values = [v for v in (*starts, *ends) if v]
    if len(values) < 2:
        return False
    peak = max(values)
    lowest_end = min((v for v in ends if v), default=peak)
    return lowest_end < peak * (1.0 - drop)


def memory_bandwidth_gbs(size_mb: int = 256, repeats: int = 5) -> float:
    """Best-of-N copy bandwidth in GB/s, counting bytes read + bytes written (as STREAM's Copy does)."""
    src = np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the pages in before timing
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


class DeviceTracker(Tracker):
    """CPU frequency before/after each sample and the hottest sensor after it; once per run, the memory
    bandwidth for the roofline column. Warns when a model's frequency sagged across its samples."""

    name = "device"
    columns = ("cpu_mhz_start", "cpu_mhz_end", "temp_c_end")

    def __init__(self, context: TrackerContext) -> None:
        super().__init__(context)
        self._before: DeviceState | None = None
        self._starts: list[float | None] = []
        self._ends: list[float | None] = []
        self._pid: int | None = None

    def environment(self) -> dict[str, Any]:
        if not self.context.measure_bandwidth:
            return {}
        return {"memory_bandwidth_gbs": round(memory_bandwidth_gbs(), 2)}

    def start(self, pid: int, phase: Phase) -> None:
        self._pid = pid
        self._before = DeviceState.read() if phase == "sample" else None

    def stop(self, result: SampleResult | None = None) -> dict[str, Any]:
        if self._before is None:
            return {}
        after = DeviceState.read()
        self._starts.append(self._before.cpu_mhz)
        self._ends.append(after.cpu_mhz)
        cols = {"cpu_mhz_start": self._before.cpu_mhz, "cpu_mhz_end": after.cpu_mhz, "temp_c_end": after.temp_c}
        self._before = None
        return cols

    def close(self) -> TrackerReport:
        warnings = []
        if throttling_suspected(self._starts, self._ends):
            warnings.append("CPU frequency dropped >10% across samples: thermal throttling suspected")
        self._starts, self._ends = [], []
        return TrackerReport(warnings=warnings)
