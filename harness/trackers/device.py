"""Device state around each sample: CPU frequency, temperature, and the machine's memory bandwidth.

Frequency and temperature come from psutil and are None where the OS does not expose them (many VMs,
macOS for temperature). Bandwidth is measured once per run with a large numpy array copy in the run's
thread count, for the roofline estimate: decode on small models is memory-bound, each token streams ~all
weight bytes plus the KV cache of every earlier position, so decode_tok_s * (weight bytes + KV bytes at the
sample's depth) / bandwidth approximates how close decode runs to the memory roofline.
"""

from __future__ import annotations

import itertools
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import psutil

from harness.models.gguf_header import read_gguf_header
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


def memory_bandwidth_gbs(threads: int = 1, size_mb: int = 256, repeats: int = 5) -> float:
    """Best-of-`repeats` copy bandwidth in GB/s with `threads` threads, each copying its own slice of one
    `size_mb` MiB array at the same time, counting bytes read + bytes written (as STREAM's Copy does).

    Measure with the run's thread count: one core rarely saturates the memory system, so a single-thread
    figure understates what llama.cpp's n threads can draw and puts roofline utilisation above 1. numpy
    releases the GIL while copying, so the threads run in parallel.
    """
    threads = max(1, int(threads))
    src = np.ones(size_mb * 1024 * 1024 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # fault the pages in before timing
    bounds = np.linspace(0, src.size, threads + 1, dtype=np.int64)
    slices = [slice(int(a), int(b)) for a, b in itertools.pairwise(bounds)]
    if threads == 1:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.copyto(dst, src)
            best = min(best, time.perf_counter() - t0)
        return 2 * src.nbytes / best / 1e9
    start = threading.Barrier(threads + 1)

    def copy(part: slice) -> None:
        start.wait()
        np.copyto(dst[part], src[part])

    best = float("inf")
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bandwidth") as pool:
        for _ in range(repeats):
            futures = [pool.submit(copy, part) for part in slices]
            start.wait()  # all threads ready: start the clock as they are released
            t0 = time.perf_counter()
            for future in futures:
                future.result()
            best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


# --- roofline: bytes one decode step reads ---------------------------------------------------------
# Decode of one token streams every weight once (the token-embedding table excepted: one row, unless the
# output head is tied to it) and reads the KV cache of every earlier position in every layer. At ~1k tokens
# of depth the KV part is a sizeable share for small models (SmolLM2-135M at 1.1k tokens: ~25 MB against
# 94 MB of weights), so a roofline from weights alone understates the bytes moved. Sizes come from the
# GGUF header.

# Architectures whose sliding-window layers follow a fixed period in llama.cpp when the GGUF has no
# `attention.sliding_window_pattern` (src/models/*.cpp, load_swa_pattern): in each period of n layers the
# last one is full attention, the others use the window.
SWA_PERIOD = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "exaone4": 4, "gpt-oss": 2}
KV_CACHE_BYTES_PER_ELEMENT = 2.0  # f16 K and V: llama.cpp's default cache type (--cache-type-k/v)


@dataclass(frozen=True)
class KvCacheShape:
    """What the KV cache holds per layer: bytes per cached token (K + V) and the layer's attention window
    (None = full attention, so a decode step reads every earlier position)."""

    layer_bytes: tuple[int, ...]
    layer_window: tuple[int | None, ...]

    @property
    def bytes_per_token(self) -> int:
        """Bytes one more cached token adds, over all layers."""
        return sum(self.layer_bytes)

    def read_bytes(self, depth: int) -> int:
        """KV bytes one decode step reads with `depth` tokens in the cache (sliding-window layers read at
        most their window)."""
        pairs = zip(self.layer_bytes, self.layer_window, strict=True)
        return sum(b * (depth if w is None else min(depth, w)) for b, w in pairs)

    def mean_read_bytes(self, prompt_tokens: int, output_tokens: int | None) -> float:
        """KV bytes per decode step averaged over a generation: the steps run at depths prompt+1 ...
        prompt+output-1 (the first output token comes from prefill)."""
        if not output_tokens or output_tokens < 2:
            return float(self.read_bytes(prompt_tokens))
        depths = np.arange(prompt_tokens + 1, prompt_tokens + output_tokens, dtype=np.int64)
        total = 0.0
        for b, w in zip(self.layer_bytes, self.layer_window, strict=True):
            total += b * float((depths if w is None else np.minimum(depths, w)).mean())
        return total


def _per_layer(value: Any, n_layers: int) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [int(v) for v in value] if len(value) == n_layers else None
    return [int(value)] * n_layers


def kv_cache_shape(
    gguf_path: Path, bytes_per_element: float = KV_CACHE_BYTES_PER_ELEMENT
) -> KvCacheShape | None:
    """The KV-cache layout of a GGUF model from its header: layers x KV heads x (key + value head size),
    per-layer head counts and sliding windows where the file has them. None where the header lacks
    attention dimensions (recurrent models, unreadable files)."""
    try:
        header = read_gguf_header(gguf_path)
    except (OSError, ValueError, KeyError, struct.error):
        return None
    n_layers = header.arch_key("block_count")
    if not isinstance(n_layers, int) or n_layers <= 0:
        return None
    heads = _per_layer(header.arch_key("attention.head_count"), n_layers)
    kv_heads = _per_layer(header.arch_key("attention.head_count_kv"), n_layers) or heads
    embd = header.arch_key("embedding_length")
    if not kv_heads or not heads:
        return None
    window = header.arch_key("attention.sliding_window")
    window = int(window) if isinstance(window, int) and window > 0 else None
    pattern = header.arch_key("attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == n_layers:
        is_swa = [bool(v) for v in pattern]
    else:
        arch = str(header.metadata.get("general.architecture"))
        period = pattern if isinstance(pattern, int) and pattern > 0 else SWA_PERIOD.get(arch)
        is_swa = [bool(window and period and il % period < period - 1) for il in range(n_layers)]
    layer_bytes, layer_window = [], []
    for il in range(n_layers):
        swa = is_swa[il] and window is not None
        default_head = embd // heads[il] if isinstance(embd, int) and heads[il] else None
        k = header.arch_key("attention.key_length_swa" if swa else "attention.key_length")
        v = header.arch_key("attention.value_length_swa" if swa else "attention.value_length")
        k = k if isinstance(k, int) else header.arch_key("attention.key_length", default_head)
        v = v if isinstance(v, int) else header.arch_key("attention.value_length", default_head)
        if not isinstance(k, int) or not isinstance(v, int):
            return None
        layer_bytes.append(int(kv_heads[il] * (k + v) * bytes_per_element))
        layer_window.append(window if swa else None)
    return KvCacheShape(layer_bytes=tuple(layer_bytes), layer_window=tuple(layer_window))


def kv_bytes_per_token(gguf_path: Path, bytes_per_element: float = KV_CACHE_BYTES_PER_ELEMENT) -> int | None:
    """KV-cache bytes one cached token takes over all layers (f16 cache by default); None if unknown."""
    shape = kv_cache_shape(gguf_path, bytes_per_element)
    return shape.bytes_per_token if shape else None


def weights_read_bytes(gguf_path: Path) -> int | None:
    """Weight bytes one decode step reads: every tensor, except that the token-embedding table is read one
    row per token when the model has its own output head (with a tied head, the output matmul reads it
    all). Mixture-of-experts models read only the active experts: not modelled (all counted)."""
    try:
        header = read_gguf_header(gguf_path)
    except (OSError, ValueError, KeyError, struct.error):
        return None
    sizes = {t.name: t for t in header.tensors}
    total = sum(t.n_bytes for t in header.tensors)
    embd = sizes.get("token_embd.weight")
    if embd is not None and "output.weight" in sizes and len(embd.shape) == 2 and embd.shape[1]:
        total -= embd.n_bytes - embd.n_bytes // embd.shape[1]
    return total


def roofline_util(
    decode_tok_s: float | None, weight_bytes: float | None, kv_read_bytes: float | None, bandwidth_gbs: float | None
) -> float | None:
    """Share of the memory roofline decode reached: decode_tok_s x (weight bytes + KV bytes read per token)
    / bandwidth. Memory-bound decode cannot exceed ~1; kv_read_bytes None counts weights only."""
    if not decode_tok_s or not weight_bytes or not bandwidth_gbs:
        return None
    return decode_tok_s * (weight_bytes + (kv_read_bytes or 0.0)) / (bandwidth_gbs * 1e9)


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

    def environment(self) -> dict[str, Any]:
        if not self.context.measure_bandwidth:
            return {}
        threads = self.context.threads
        return {"memory_bandwidth_gbs": round(memory_bandwidth_gbs(threads), 2), "memory_bandwidth_threads": threads}

    def start(self, pid: int, phase: Phase) -> None:
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
