"""Energy per sample, from counters the hardware keeps: Linux powercap (Intel/AMD RAPL) and NVIDIA NVML.

Both are cumulative energy counters read at the start and end of each sample window, so the figure is
exact to the counter's resolution with no polling (nothing runs during the sample).

- **RAPL** (`/sys/class/powercap/intel-rapl:N/energy_uj`, also used by AMD's driver): only the top-level
  package zones are summed (`intel-rapl:0`, `intel-rapl:1`, …); their sub-zones (core, uncore, dram) are
  parts of the package and would be counted twice. A package counter wraps at `max_energy_range_uj`; a
  reading lower than the previous one means exactly one wrap (a sample is far shorter than a wrap period,
  ~minutes at full load). Since Linux 5.10 `energy_uj` is readable by root only (CVE-2020-8694): an
  unprivileged run gets empty cells and run.json says "permission denied".
- **NVML** (`nvmlDeviceGetTotalEnergyConsumption`, mJ since driver load, Volta and newer), when the
  `pynvml`/`nvidia-ml-py` module is importable and a GPU answers.

What it measures is the whole package's (and GPU's) energy while the sample ran, not the worker's share:
other load on the machine counts too. `j_per_token` divides by the sample's generated tokens. Where no
counter is exposed (VMs, most laptops without root) the four columns are empty and run.json
`environment.trackers.energy` names the reason -- never a guess.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.trackers.base import Phase, Tracker, TrackerContext

if TYPE_CHECKING:
    from harness.scenarios.base import SampleResult

POWERCAP_ROOT_ENV = "HARNESS_POWERCAP_ROOT"  # tests point this at a fake sysfs tree
DEFAULT_POWERCAP_ROOT = "/sys/class/powercap"


@dataclass(frozen=True)
class RaplZone:
    label: str  # e.g. "rapl:package-0"
    energy_path: Path
    max_uj: int

    def read_uj(self) -> int:
        return int(self.energy_path.read_text().strip())

    def delta_uj(self, start: int, end: int) -> int:
        """Energy between two readings, allowing for one wrap of the counter."""
        return end - start if end >= start else end + self.max_uj - start


def _is_package_zone(path: Path) -> bool:
    # "intel-rapl:0" is a package; "intel-rapl:0:1" is one of its sub-zones.
    return path.name.count(":") == 1


def discover_rapl(root: Path) -> tuple[list[RaplZone], str | None]:
    """Readable package zones under `root`, or ([], reason)."""
    if not root.is_dir():
        return [], f"{root} not present (no powercap/RAPL interface exposed on this machine)"
    zones: list[RaplZone] = []
    denied: list[str] = []
    for path in sorted(root.iterdir()):
        if not _is_package_zone(path) or not (path / "energy_uj").exists():
            continue
        try:
            name = (path / "name").read_text().strip() if (path / "name").exists() else path.name
            zone = RaplZone(f"rapl:{name}", path / "energy_uj", int((path / "max_energy_range_uj").read_text()))
            zone.read_uj()
        except PermissionError:
            denied.append(str(path / "energy_uj"))
            continue
        except (OSError, ValueError):
            continue
        zones.append(zone)
    if zones:
        return zones, None
    if denied:
        return [], f"permission denied reading {denied[0]} (root only since Linux 5.10); run as root for energy"
    return [], f"no RAPL package zone with energy_uj under {root}"


class _Nvml:
    """NVIDIA GPUs' cumulative energy counters through pynvml (nvidia-ml-py provides the module)."""

    def __init__(self) -> None:
        import pynvml  # optional dependency: ImportError is handled by the caller

        self._nvml = pynvml
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        for handle in self.handles:
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises NotSupported on pre-Volta GPUs
        self.labels = [f"nvml:{i}" for i in range(count)]

    def read_mj(self) -> list[int]:
        return [int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h)) for h in self.handles]


def discover_nvml() -> tuple[_Nvml | None, str | None]:
    try:
        nvml = _Nvml()
    except ImportError:
        return None, "pynvml / nvidia-ml-py not installed"
    except Exception as exc:  # pynvml raises NVMLError subclasses (no driver, no GPU, not supported)
        return None, f"NVML unavailable: {exc}"
    if not nvml.handles:
        return None, "NVML found no GPU"
    return nvml, None


class EnergyTracker(Tracker):
    name = "energy"
    columns = ("energy_j", "avg_power_w", "j_per_token", "power_source")

    def __init__(self, context: TrackerContext, powercap_root: Path | None = None) -> None:
        super().__init__(context)
        root = powercap_root or Path(os.environ.get(POWERCAP_ROOT_ENV, DEFAULT_POWERCAP_ROOT))
        self.zones, self.rapl_reason = discover_rapl(root)
        self.nvml, self.nvml_reason = discover_nvml()
        self._start: tuple[float, list[int], list[int]] | None = None

    @property
    def source(self) -> str:
        labels = [z.label for z in self.zones] + (self.nvml.labels if self.nvml else [])
        return "+".join(labels)

    def environment(self) -> dict[str, Any]:
        return {
            "sources": self.source.split("+") if self.source else [],
            "rapl": self.rapl_reason or "ok",
            "nvml": self.nvml_reason or "ok",
        }

    def _read(self) -> tuple[float, list[int], list[int]]:
        return (
            time.perf_counter(),
            [z.read_uj() for z in self.zones],
            self.nvml.read_mj() if self.nvml else [],
        )

    def start(self, pid: int, phase: Phase) -> None:
        self._start = self._read() if phase == "sample" and self.source else None

    def stop(self, result: SampleResult | None = None) -> dict[str, Any]:
        if self._start is None:
            return {}
        t0, rapl0, gpu0 = self._start
        t1, rapl1, gpu1 = self._read()
        self._start = None
        joules = sum(z.delta_uj(a, b) for z, a, b in zip(self.zones, rapl0, rapl1, strict=True)) / 1e6
        joules += sum(b - a for a, b in zip(gpu0, gpu1, strict=True)) / 1e3
        tokens = result.total_output_tokens if result is not None else 0  # all stages: the energy spans them
        return {
            "energy_j": joules,
            "avg_power_w": joules / (t1 - t0) if t1 > t0 else None,
            "j_per_token": joules / tokens if tokens else None,
            "power_source": self.source,
        }
