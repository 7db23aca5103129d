"""`harness compare --by device`: the devices of a fleet run side by side.

A thin layer over `compare`: each run is split by its `device` column into one pseudo-run per device,
whose run record carries that device's environment (from run.json `devices.<name>`), and the ordinary
comparison runs on those (the first device is the baseline). compare's like-for-like check then names
the CPU and core differences; `hardware_differences` (passed to the comparison's build) adds what a
device comparison also needs to see -- RAM, OS, accelerators, ONNX Runtime providers, llama.cpp build --
to the same warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from harness.errors import HarnessError
from harness.report.load import Run
from harness.results.record import RunRecord

# Hardware facts beyond compare's own like-for-like fields, read from each device's fingerprint.
_HARDWARE: dict[str, str] = {
    "RAM GB": "ram_gb",
    "OS": "os",
    "accelerators": "accelerators",
    "ONNX Runtime providers": "onnxruntime_providers",
}


def _devices_section(run: Run) -> dict[str, Any]:
    if run.record is None:
        return {}
    return run.record.devices  # declared on RunRecord (a dict; a damaged value is refused when loaded)


def _fingerprint(run: Run) -> dict[str, Any]:
    fp = run.record.extra.get("device_fingerprint") if run.record is not None else None
    return fp if isinstance(fp, dict) else {}


def split_by_device(runs: Sequence[Run]) -> list[Run]:
    """One pseudo-run per run x device, labelled by the device (`device@run` when several runs are given)."""
    out: list[Run] = []
    for run in runs:
        if "device" not in run.results.columns:
            raise HarnessError(f"{run.label}: no device column; --by device compares the devices of a fleet run")
        section = _devices_section(run)
        devices = [d for d in dict.fromkeys(run.results["device"].fillna("").astype(str)) if d]
        for device in devices:
            entry = section.get(device) or {}
            fp = entry.get("fingerprint") or {}
            record = None
            if run.record is not None:
                data = run.record.to_dict()
                env = entry.get("environment") or fp.get("environment")
                if env:
                    data["environment"] = env
                data["device_fingerprint"] = fp
                record = RunRecord.from_dict(data)
            rows = run.results[run.results["device"].astype(str) == device].copy()
            out.append(
                replace(
                    run,
                    label=device if len(runs) == 1 else f"{device}@{run.label}",
                    results=rows,
                    record=record,
                    summaries=[s for s in run.summaries if str(s.get("device", "")) == device],
                )
            )
    if len(out) < 2:
        names = ", ".join(r.label for r in out) or "none"
        raise HarnessError(
            f"compare --by device needs rows from at least two devices; found: {names} "
            f"(a fleet run: harness run --fleet ...)"
        )
    return out


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return "" if value is None else str(value)


def hardware_differences(baseline: Run, other: Run) -> list[str]:
    """One line per hardware fact that differs between two device pseudo-runs (unknown on a side: skipped)."""
    a, b = _fingerprint(baseline), _fingerprint(other)
    lines = []
    for label, key in _HARDWARE.items():
        va, vb = _shown(a.get(key)), _shown(b.get(key))
        if key in a and key in b and va != vb:
            lines.append(f"{label}: {baseline.label}={va} vs {other.label}={vb}")
    fa = {k for k, v in ((a.get("llama_cpp") or {}).get("features") or {}).items() if str(v) == "1"}
    fb = {k for k, v in ((b.get("llama_cpp") or {}).get("features") or {}).items() if str(v) == "1"}
    if (fa or fb) and fa != fb:
        only_a, only_b = ",".join(sorted(fa - fb)) or "-", ",".join(sorted(fb - fa)) or "-"
        lines.append(f"llama.cpp build features: only {baseline.label}: {only_a}; only {other.label}: {only_b}")
    return lines
