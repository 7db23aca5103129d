"""The energy tracker against fake powercap trees: two packages, a counter wrap-around, no permission."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness.backends.base import GenerationResult
from harness.scenarios.base import SampleResult
from harness.trackers.base import TrackerContext
from harness.trackers.energy import EnergyTracker, discover_rapl
from harness.trackers.latency import LatencyStats

MAX_UJ = 262143328850


def _zone(root: Path, zone: str, name: str, energy_uj: int, max_uj: int = MAX_UJ) -> Path:
    path = root / zone
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return path


def _result(tokens: int) -> SampleResult:
    gen = GenerationResult(
        token_ids=list(range(tokens)),
        text="x",
        start_ns=0,
        token_ns=[1_000_000 * (i + 1) for i in range(tokens)],
        stop_reason="length",
    )
    return SampleResult(0, "x", LatencyStats.from_generation(10, gen), "length", False, 10)


def _tracker(root: Path) -> EnergyTracker:
    return EnergyTracker(TrackerContext(threads=1), powercap_root=root)


def test_two_packages_are_summed_and_subzones_are_not(tmp_path: Path) -> None:
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    p1 = _zone(tmp_path, "intel-rapl:1", "package-1", 5_000_000)
    sub = _zone(tmp_path, "intel-rapl:0:0", "core", 7_000_000)  # part of package 0: never added again
    tracker = _tracker(tmp_path)
    assert tracker.source == "rapl:package-0+rapl:package-1"
    tracker.start(os.getpid(), "sample")
    (p0 / "energy_uj").write_text("3000000\n")  # +2 J
    (p1 / "energy_uj").write_text("5500000\n")  # +0.5 J
    (sub / "energy_uj").write_text("9000000\n")
    cols = tracker.stop(_result(6))
    assert cols["energy_j"] == pytest.approx(2.5)
    assert cols["j_per_token"] == pytest.approx(2.5 / 6)
    assert cols["avg_power_w"] > 0
    assert cols["power_source"] == "rapl:package-0+rapl:package-1"


def test_a_counter_that_wraps_is_unwrapped(tmp_path: Path) -> None:
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", MAX_UJ - 1_000_000)
    tracker = _tracker(tmp_path)
    tracker.start(os.getpid(), "sample")
    (p0 / "energy_uj").write_text("500000\n")  # wrapped: 1 J before the wrap + 0.5 J after
    assert tracker.stop(_result(3))["energy_j"] == pytest.approx(1.5)


def test_no_powercap_leaves_the_cells_empty_and_says_why(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path / "absent")
    tracker.start(os.getpid(), "sample")
    assert tracker.stop(_result(3)) == {}
    env = tracker.environment()
    assert env["sources"] == [] and "not present" in env["rapl"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file: permission denied cannot be staged")
def test_permission_denied_is_named(tmp_path: Path) -> None:
    p0 = _zone(tmp_path, "intel-rapl:0", "package-0", 1)
    (p0 / "energy_uj").chmod(0)
    zones, reason = discover_rapl(tmp_path)
    assert zones == [] and reason is not None and "permission denied" in reason


def test_permission_denied_is_named_even_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root can read a 0400 file, so the kernel's refusal (Linux >= 5.10 for non-root) is simulated.
    _zone(tmp_path, "intel-rapl:0", "package-0", 1)
    real_read_text = Path.read_text

    def deny(self: Path, *args: object, **kwargs: object) -> str:
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", deny)
    tracker = _tracker(tmp_path)
    assert tracker.source == ""
    assert "permission denied" in tracker.environment()["rapl"]
    tracker.start(os.getpid(), "sample")
    assert tracker.stop(_result(3)) == {}
