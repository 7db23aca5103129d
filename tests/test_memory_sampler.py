"""The memory sampler: on Linux the kernel's VmHWM gives the exact peak of a window, so polling can be rare."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator

import pytest

from harness.trackers.memory import (
    POLL_INTERVAL_WITH_HWM_S,
    POLL_INTERVAL_WITHOUT_HWM_S,
    MemorySampler,
    hwm_resettable,
)

CHILD = textwrap.dedent(
    """
    import sys
    for line in sys.stdin:
        if line.strip() == "spike":
            block = bytearray(64 * 1024 * 1024)
            block[::4096] = b"x" * len(block[::4096])  # touch every page
            del block
        print("done", flush=True)
    """
)


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield proc
    proc.kill()
    proc.wait(timeout=5)


def _ask(proc: subprocess.Popen[str], command: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


def test_a_spike_between_polls_is_caught_by_the_kernel_high_water_mark(child: subprocess.Popen[str]) -> None:
    if not hwm_resettable(child.pid):
        pytest.skip("needs Linux VmHWM and /proc/PID/clear_refs")
    _ask(child, "warm")
    with MemorySampler(child.pid) as sampler:
        assert sampler.hwm and sampler.interval_s == POLL_INTERVAL_WITH_HWM_S
        time.sleep(0.05)  # let the first poll happen
        sampler.start_window()
        _ask(child, "spike")  # 64 MiB allocated and freed within a few ms, between two polls
        window = sampler.end_window(full_info=False)
        quiet_start = time.perf_counter()
        sampler.start_window()
        _ask(child, "nothing")
        quiet = sampler.end_window(full_info=False)
    assert time.perf_counter() - quiet_start < 0.5  # stop() did not wait out the 1 s poll interval
    assert window.hwm_rss_mb is not None and window.polled_peak_rss_mb is not None
    assert window.peak_rss_mb is not None and window.peak_rss_mb >= window.polled_peak_rss_mb + 60
    assert quiet.peak_rss_mb is not None and quiet.peak_rss_mb < window.peak_rss_mb - 60  # reset per window
    assert sampler.polls <= 3


def test_interval_falls_back_to_fast_polling_without_a_resettable_peak(
    child: subprocess.Popen[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import harness.trackers.memory as memory

    monkeypatch.setattr(memory, "hwm_resettable", lambda pid: False)
    sampler = MemorySampler(child.pid)
    assert not sampler.hwm and sampler.interval_s == POLL_INTERVAL_WITHOUT_HWM_S
    assert MemorySampler(child.pid, interval_s=0.5).interval_s == 0.5  # an explicit interval wins
