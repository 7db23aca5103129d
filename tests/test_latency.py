from __future__ import annotations

import pytest

from harness.backends.base import EngineCounters, GenerationResult
from harness.trackers.latency import LatencyStats

MS = 1_000_000


def _result(
    start_ms: float, token_ms: list[float], counters: EngineCounters | None = None
) -> GenerationResult:
    return GenerationResult(
        token_ids=list(range(len(token_ms))),
        text="",
        start_ns=int(start_ms * MS),
        token_ns=[int(t * MS) for t in token_ms],
        stop_reason="length",
        counters=counters,
    )


def test_latency_from_token_timestamps() -> None:
    # prompt of 100 tokens; first token at 200 ms; then tokens every 10 ms (4 decode steps over 40 ms)
    stats = LatencyStats.from_generation(100, _result(0, [200, 210, 220, 230, 240]))
    assert stats.output_tokens == 5
    assert stats.ttft_s == pytest.approx(0.200)
    assert stats.prefill_tok_s == pytest.approx(500.0)
    assert stats.decode_tok_s == pytest.approx(100.0)  # 4 steps / 0.040 s
    assert stats.e2e_s == pytest.approx(0.240)
    assert stats.itl_p50_ms == pytest.approx(10.0)


def test_itl_percentiles_see_a_stall() -> None:
    times = [100.0 + 10 * i for i in range(100)]
    times[-1] += 500  # one 510 ms stall at the end
    stats = LatencyStats.from_generation(10, _result(0, times))
    assert stats.itl_p50_ms == pytest.approx(10.0)
    assert stats.itl_p99_ms > 10.0


def test_engine_cross_check_percent() -> None:
    counters = EngineCounters(prompt_tokens=100, prompt_ms=190.0, decode_tokens=4, decode_ms=38.0)
    stats = LatencyStats.from_generation(100, _result(0, [200, 210, 220, 230, 240], counters))
    assert stats.engine_decode_tok_s == pytest.approx(4 / 0.038)
    assert stats.engine_prefill_tok_s == pytest.approx(100 / 0.190)
    assert stats.decode_vs_engine_pct == pytest.approx(100 * (100.0 / (4 / 0.038) - 1))


def test_single_and_zero_tokens_have_no_decode_rate() -> None:
    one = LatencyStats.from_generation(10, _result(0, [50]))
    assert one.decode_tok_s is None and one.ttft_s == pytest.approx(0.05)
    none = LatencyStats.from_generation(10, _result(0, []))
    assert none.ttft_s is None and none.output_tokens == 0 and none.e2e_s is None

