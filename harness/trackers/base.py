"""The tracker interface: observers in the parent process that add columns to each sample's row.

A tracker watches a worker from outside (its memory, the CPU's frequency, the package's energy) so it
never perturbs the timed generation with its own code in the engine's process. The runner opens a window
around each model load and each sample and merges what `stop()` returns into the row; it iterates over
trackers and never names one.

    environment()            once per run: what this tracker can see on this machine (run.json)
    start(pid, phase)        a window opens: phase "load" (model load) or "sample"
    stop(result) -> columns  the window closes; `result` is the sample's SampleResult (None for a load
                             or a failed sample), for columns derived from it (joules per token)
    close() -> TrackerReport the worker is gone: per-model record for run.json, warnings

A new tracker is one file: subclass `Tracker`, declare the `columns` it fills (they must be in
`harness.results.schema`), and add it to `harness.trackers.TRACKERS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from harness.scenarios.base import SampleResult

Phase = Literal["load", "sample"]


@dataclass(frozen=True)
class TrackerContext:
    """What a tracker may need to know about the run, given at construction."""

    threads: int
    measure_bandwidth: bool = True
    sample_interval_s: float | None = None  # None = the memory sampler's own choice (1 s with VmHWM)
    wait_quiet_s: float | None = None  # --wait-quiet: bound of the wait for a quiet machine per sample


@dataclass
class TrackerReport:
    record: dict[str, Any] = field(default_factory=dict)  # merged into run.json models.<id>
    warnings: list[str] = field(default_factory=list)


class Tracker(ABC):
    name: ClassVar[str]
    columns: ClassVar[tuple[str, ...]] = ()

    def __init__(self, context: TrackerContext) -> None:
        self.context = context

    def environment(self) -> dict[str, Any]:
        """Once per run, before any worker starts: facts for run.json `environment.trackers.<name>`."""
        return {}

    @abstractmethod
    def start(self, pid: int, phase: Phase) -> None:
        """Open a window on process `pid` (the worker, or the server it drives)."""

    @abstractmethod
    def stop(self, result: SampleResult | None = None) -> dict[str, Any]:
        """Close the window; return row columns (None values for what could not be measured)."""

    def close(self) -> TrackerReport:
        """The watched process is gone (or about to be): release resources, report."""
        return TrackerReport()
