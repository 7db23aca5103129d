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
    e2e_s         = tE - t0
    itl           = consecutive differences of t1..tN

    tE = end of generation: the end-of-sequence token's arrival on an EOS stop (the EOS is not an output
         token, but the engine computed it), else tN. A sample whose very first token is EOS has no t1:
         its TTFT (and prefill rate) is tE - t0, prefill happened all the same.

The engine cross-check (outside_engine_ms_per_tok) compares per-step times over the steps the engine
counted: llama.cpp's decode counter includes the step that produced an EOS, so on EOS stops the harness
side runs from t1 to tE (N steps), not to tN (N-1 steps).

Over HTTP (harness.backends.openai_http) the times are arrivals of streamed chunks and N is the server's
count of generated tokens (never the number of chunks); `itl_unit` says whether the gaps are per token or
per chunk, `output_tokens_source` where N came from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from harness.backends.base import EngineCounters, GenerationResult


def _outside_engine_ms(step_times: list[int], counters: EngineCounters | None) -> float | None:
    """Per decode step, wall time between tokens not spent in the engine's eval timer (sampling, the Python
    loop): what makes decode_tok_s lower than engine_decode_tok_s. `step_times` are t1..tE: one decode step
    between consecutive entries, the same steps the engine's counter saw. Each side is divided by its own
    step count, so a counter that disagrees by a step does not bias the figure by a whole step's time."""
    steps = len(step_times) - 1
    if counters is None or steps < 1 or counters.decode_tokens <= 0:
        return None
    wall_ms = (step_times[-1] - step_times[0]) / 1e6
    return wall_ms / steps - counters.decode_ms / counters.decode_tokens


@dataclass(frozen=True)
class LatencyStats:
    prompt_tokens: int
    output_tokens: int | None
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
    itl_unit: str = "token"  # "chunk": ITL over streamed chunks (HTTP), which may hold several tokens
    output_tokens_source: str = "engine"

    @classmethod
    def from_generation(cls, prompt_tokens: int, result: GenerationResult) -> LatencyStats:
        times = result.token_ns
        n_times = len(times)
        # Over HTTP the times are chunk arrivals and the counts are the server's (see GenerationResult).
        n = result.output_tokens
        if n is None and result.itl_unit == "token":
            n = n_times
        if result.prompt_tokens is not None:
            prompt_tokens = result.prompt_tokens
        end = result.end_ns if result.end_ns is not None else (times[-1] if n_times else None)
        # An EOS arriving after the last kept token is one more decode step the engine ran (and counted);
        # an EOS as the first token is the first token time.
        step_times = [*times, end] if end is not None and (not n_times or end > times[-1]) else list(times)
        ttft = (step_times[0] - result.start_ns) / 1e9 if step_times else None
        e2e = (end - result.start_ns) / 1e9 if end is not None else None
        decode = None
        itl = np.diff(np.asarray(times, dtype=np.int64)) / 1e6 if n_times >= 2 else np.empty(0)
        if n is not None and n >= 2 and n_times >= 2 and times[-1] > times[0]:
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
            outside_engine_ms_per_tok=_outside_engine_ms(step_times, counters),
            itl_unit=result.itl_unit,
            output_tokens_source=result.output_tokens_source,
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
