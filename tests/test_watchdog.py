"""The watchdog's policy: the documented default deadline, and a late answer counted as a timeout."""

from __future__ import annotations

import pytest

from harness.launchers.watchdog import default_sample_timeout, overran, timeout_message


def test_default_deadline_is_the_documented_floor_rates() -> None:
    # 60 s + (n_ctx - max_new_tokens) at 20 tok/s prefill + max_new_tokens at 2 tok/s decode
    assert default_sample_timeout(256, 4096) == pytest.approx(60 + 3840 / 20 + 256 / 2)
    assert default_sample_timeout(8, None) == pytest.approx(60 + 8 / 2)  # n_ctx unknown: no prompt term


@pytest.mark.parametrize(
    ("waited", "e2e", "late"),
    [(2.0, 1.9, False), (3.5, 1.0, True), (1.0, 3.5, True), (2.9, None, False)],
    ids=["in-time", "parent-waited-too-long", "worker-clock-too-long", "no-latency"],
)
def test_a_late_answer_is_a_timeout(waited: float, e2e: float | None, late: bool) -> None:
    assert overran(3.0, waited, e2e) is late
    assert overran(None, 1e9, 1e9) is False  # no deadline, nothing is late
    assert timeout_message(20.0) == "timeout after 20 s"
