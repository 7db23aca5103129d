"""Latency figures of one generation, computed from per-token timestamps.

All timestamps are `time.perf_counter_ns()` taken in the worker process, in the thread that drives the
engine, at the moment each token id leaves the engine -- before detokenisation, so a Chinese character
spread over several byte-level tokens is counted as the tokens it is, not as streamed text chunks.

    t0 = prompt ids handed to the engine
    t1 = first generated token (prefill of the whole prompt + one sampling step)
    tN = last generated token
    ttft_s        = t1 - t0
    prefill_tok_s = prompt_tokens / ttft_s
    decode_tok_s  = (N - 1) / (tN - t1)          N-1 decode steps happen between t1 and tN
    e2e_s         = tN - t0
    itl           = consecutive differences of t1..tN
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from harness.backends.base import EngineCounters, GenerationResult


def _outside_engine_ms(times: list[int], counters: EngineCounters | None) -> float | None:
    """Per decode step, wall time between tokens not spent in the engine's eval timer (sampling, the Python
    loop): what makes decode_tok_s lower than engine_decode_tok_s."""
    if counters is None or len(times) < 2 or counters.decode_tokens <= 0:
        return None
    wall_ms = (times[-1] - times[0]) / 1e6
    return (wall_ms - counters.decode_ms) / counters.decode_tokens


@dataclass(frozen=True)
class LatencyStats:
    prompt_tokens: int
    output_tokens: int
    ttft_s: float | None
    prefill_tok_s: float | None
    decode_tok_s: float | None
    e2e_s: float | None
    itl_p50_ms: float | None
    itl_p90_ms: float | None
    itl_p99_ms: float | None
    engine_prompt_tokens: int | None = None
    engine_prefill_tok_s: float | None = None
    engine_decode_tokens: int | None = None
    engine_decode_tok_s: float | None = None
    decode_vs_engine_pct: float | None = None
    outside_engine_ms_per_tok: float | None = None

    @classmethod
    def from_generation(cls, prompt_tokens: int, result: GenerationResult) -> LatencyStats:
        times = result.token_ns
        n = len(times)
        ttft = (times[0] - result.start_ns) / 1e9 if n else None
        e2e = (times[-1] - result.start_ns) / 1e9 if n else None
        decode = None
        itl = np.diff(np.asarray(times, dtype=np.int64)) / 1e6 if n >= 2 else np.empty(0)
        if n >= 2 and times[-1] > times[0]:
            decode = (n - 1) / ((times[-1] - times[0]) / 1e9)
        pct = (lambda q: float(np.percentile(itl, q))) if itl.size else (lambda q: None)
        counters: EngineCounters | None = result.counters
        engine_decode = counters.decode_tok_s if counters else None
        return cls(
            prompt_tokens=prompt_tokens,
            output_tokens=n,
            ttft_s=ttft,
            prefill_tok_s=prompt_tokens / ttft if ttft else None,
            decode_tok_s=decode,
            e2e_s=e2e,
            itl_p50_ms=pct(50),
            itl_p90_ms=pct(90),
            itl_p99_ms=pct(99),
            engine_prompt_tokens=counters.prompt_tokens if counters else None,
            engine_prefill_tok_s=counters.prefill_tok_s if counters else None,
            engine_decode_tokens=counters.decode_tokens if counters else None,
            engine_decode_tok_s=engine_decode,
            decode_vs_engine_pct=(100.0 * (decode / engine_decode - 1.0)) if decode and engine_decode else None,
            outside_engine_ms_per_tok=_outside_engine_ms(times, counters),
        )

    def as_row(self) -> dict[str, float | int | None]:
        return asdict(self)

    def __str__(self) -> str:
        def f(v: float | None, spec: str) -> str:
            return "-" if v is None else format(v, spec)

        return (
            f"{self.prompt_tokens} prompt tok, {self.output_tokens} out tok | ttft {f(self.ttft_s, '.3f')} s | "
            f"prefill {f(self.prefill_tok_s, '.1f')} tok/s | decode {f(self.decode_tok_s, '.1f')} tok/s "
            f"(engine {f(self.engine_decode_tok_s, '.1f')}) | e2e {f(self.e2e_s, '.2f')} s"
        )
