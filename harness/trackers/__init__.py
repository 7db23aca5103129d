"""Parent-side observers of a worker (system noise, memory, device state, energy), plus the worker-side latency maths.

`TRACKERS` lists the tracker classes every run uses, as "module:Class" references imported on demand.
"""

from __future__ import annotations

import importlib

from harness.trackers.base import Tracker, TrackerContext, TrackerReport

TRACKERS: tuple[str, ...] = (
    # First: its quiet wait and canaries run before the others open their windows (and, as the session
    # closes windows in reverse, after they close theirs).
    "harness.trackers.noise:NoiseTracker",
    "harness.trackers.memory:MemoryTracker",
    "harness.trackers.device:DeviceTracker",
    "harness.trackers.energy:EnergyTracker",
)


def tracker_classes(refs: tuple[str, ...] = TRACKERS) -> list[type[Tracker]]:
    classes = []
    for ref in refs:
        module_name, _, class_name = ref.partition(":")
        classes.append(getattr(importlib.import_module(module_name), class_name))
    return classes


def make_trackers(context: TrackerContext, refs: tuple[str, ...] = TRACKERS) -> list[Tracker]:
    return [cls(context) for cls in tracker_classes(refs)]


__all__ = ["TRACKERS", "Tracker", "TrackerContext", "TrackerReport", "make_trackers", "tracker_classes"]
