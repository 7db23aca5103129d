from __future__ import annotations

import pytest

from harness.backends.base import EngineCounters, GenerationResult
from harness.trackers.latency import LatencyStats

MS = 1_000_000


def _result(
    start_ms: float, token_ms: list[float], counters: EngineCounters | None = None, eos_ms: float | None = None
) -> GenerationResult:
    """A generation whose tokens arrived at token_ms; eos_ms: an end-of-sequence token arrived then."""
    return GenerationResult(
        token_ids=list(range(len(token_ms))),
        text="",
        start_ns=int(start_ms * MS),
        token_ns=[int(t * MS) for t in token_ms],
        stop_reason="length" if eos_ms is None else "eos",
        counters=counters,
        end_ns=None if eos_ms is None else int(eos_ms * MS),
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


def test_time_outside_the_engine_per_decode_step() -> None:
    # 4 decode steps over 40 ms of wall time, of which the engine's eval timer saw 36 ms: 1 ms per step outside
    counters = EngineCounters(prompt_tokens=100, prompt_ms=190.0, decode_tokens=4, decode_ms=36.0)
    stats = LatencyStats.from_generation(100, _result(0, [200, 210, 220, 230, 240], counters))
    assert stats.outside_engine_ms_per_tok == pytest.approx(1.0)
    assert LatencyStats.from_generation(100, _result(0, [200, 210])).outside_engine_ms_per_tok is None


def test_engine_gap_warning_is_one_line_per_model_with_its_explanation() -> None:
    from harness.run import engine_gap_warning

    assert engine_gap_warning("m", [(-1.2, 0.1), (-2.9, 0.2)]) is None
    warning = engine_gap_warning("m", [(-3.3, 0.5), (-1.0, 0.2), (-3.1, 0.6)])
    assert warning is not None and "2/3 samples" in warning and "-3.30..-3.10%" in warning
    assert "0.50 ms" in warning


def test_eos_stop_cross_checks_the_engine_over_the_steps_it_counted() -> None:
    # 5 tokens 10 ms apart, then the EOS 10 ms later: llama.cpp ran 5 decode steps (the 5th produced the EOS),
    # 45 ms in its eval timer. Over t1..tEOS: 50 ms / 5 steps = 10 ms per step, 9 in the engine -> 1 ms outside.
    # Over t1..tN it would be (40 - 45) / 5 = -1 ms: outside the engine "negative".
    counters = EngineCounters(prompt_tokens=100, prompt_ms=190.0, decode_tokens=5, decode_ms=45.0)
    stats = LatencyStats.from_generation(100, _result(0, [200, 210, 220, 230, 240], counters, eos_ms=250))
    assert stats.outside_engine_ms_per_tok == pytest.approx(1.0)
    assert stats.e2e_s == pytest.approx(0.250)  # to the EOS, which the engine had to compute
    assert stats.output_tokens == 5  # the EOS is not an output token
    assert stats.decode_tok_s == pytest.approx(100.0)  # t1..tN, as on length stops
    assert stats.ttft_s == pytest.approx(0.200)


def test_a_length_stop_is_unchanged_by_an_end_time_equal_to_the_last_token() -> None:
    counters = EngineCounters(prompt_tokens=100, prompt_ms=190.0, decode_tokens=4, decode_ms=36.0)
    plain = LatencyStats.from_generation(100, _result(0, [200, 210, 220, 230, 240], counters))
    result = _result(0, [200, 210, 220, 230, 240], counters)
    result.end_ns = result.token_ns[-1]
    assert LatencyStats.from_generation(100, result) == plain


def test_an_eos_as_first_token_keeps_ttft_and_prefill() -> None:
    counters = EngineCounters(prompt_tokens=100, prompt_ms=190.0, decode_tokens=0, decode_ms=0.0)
    stats = LatencyStats.from_generation(100, _result(0, [], counters, eos_ms=200))
    assert stats.output_tokens == 0
    assert stats.ttft_s == pytest.approx(0.200) and stats.prefill_tok_s == pytest.approx(500.0)
    assert stats.e2e_s == pytest.approx(0.200)
    assert stats.decode_tok_s is None and stats.itl_p50_ms is None and stats.outside_engine_ms_per_tok is None


def test_one_token_then_eos_has_one_engine_step_to_compare() -> None:
    counters = EngineCounters(prompt_tokens=100, prompt_ms=190.0, decode_tokens=1, decode_ms=8.0)
    stats = LatencyStats.from_generation(100, _result(0, [200], counters, eos_ms=210))
    assert stats.outside_engine_ms_per_tok == pytest.approx(2.0)
    assert stats.decode_tok_s is None and stats.e2e_s == pytest.approx(0.210)
