"""Device state around each sample: CPU frequency, temperature, and the machine's memory bandwidth.

Frequency and temperature come from psutil and are None where the OS does not expose them (many VMs,
macOS for temperature). Bandwidth is measured once per run with a large numpy array copy, for the
roofline estimate: decode on small models is memory-bound, each token streams ~all weight bytes, so
decode_tok_s * weight_bytes / bandwidth approximates how close decode runs to the memory roofline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import psutil


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
