"""The default engine thread count: the cores this process may actually use.

`os.cpu_count()` and psutil's physical count describe the machine, not what the process is allowed: a
container limited by a CPU quota (cgroup v2 `cpu.max`, v1 `cpu.cfs_quota_us`) or pinned to a few CPUs
(affinity, cpusets) would get one llama.cpp thread per host core. llama.cpp's threads meet at a barrier
after every operation, so one thread more than the CPUs available stalls all of them (and a quota
throttles the whole group for the rest of each period).

    threads = min(physical cores among the CPUs in the affinity mask, floor(cgroup CPU quota)), at least 1

Physical cores come from /sys/devices/system/cpu/cpuN/topology (Linux); where that is unreadable, the
affinity count is scaled by psutil's physical/logical ratio. The quota is the tightest limit on the path
from this process's cgroup up to the hierarchy root. Rounding the quota down keeps the threads within it:
1.5 CPUs of quota gives 1 thread, which is never throttled. `default_threads()` returns the count and a
one-line account of how it was derived, for run.json.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import psutil


@dataclass(frozen=True)
class CpuQuota:
    cpus: float  # CPU-seconds per second the cgroup may use
    source: str  # e.g. "cgroup v2 cpu.max /sys/fs/cgroup/user.slice"

    @property
    def whole_cpus(self) -> int:
        """The quota rounded down, at least 1: threads that never exceed it (1.5 CPUs -> 1)."""
        return max(1, math.floor(self.cpus + 1e-9))


def affinity_cpus() -> set[int] | None:
    """CPUs this process may run on (Linux, Windows, FreeBSD); None where the OS does not say."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    try:
        return set(psutil.Process().cpu_affinity() or [])
    except (AttributeError, psutil.Error, OSError):
        return None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def physical_cores_of(cpus: set[int], root: Path = Path("/")) -> int | None:
    """Distinct physical cores (package, core id) among `cpus`, from sysfs topology; None if unreadable."""
    cores = set()
    for cpu in cpus:
        topo = root / f"sys/devices/system/cpu/cpu{cpu}/topology"
        core, package = _read(topo / "core_id"), _read(topo / "physical_package_id")
        if core is None or package is None:
            return None
        cores.add((package, core))
    return len(cores) or None


@dataclass(frozen=True)
class _Mount:
    root: str  # the part of the cgroup hierarchy mounted here
    point: Path
    fstype: str
    options: set[str]


def _mounts(root: Path) -> list[_Mount]:
    text = _read(root / "proc/self/mountinfo")
    mounts = []
    for line in (text or "").splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3:
            continue
        point = fields[4].replace("\\040", " ")
        mounts.append(_Mount(fields[3], root / point.lstrip("/"), tail[0], set(tail[2].split(","))))
    return mounts


def _cgroup_dir(mount_point: Path, mount_root: str, cgroup_path: str) -> Path:
    """The directory of `cgroup_path` under a mount of the hierarchy's `mount_root` (containers mount
    their own cgroup as the root; then paths outside it map to the mount point itself)."""
    path, base = PurePosixPath(cgroup_path), PurePosixPath(mount_root)
    try:
        rel = path.relative_to(base)
    except ValueError:
        return mount_point
    return mount_point / rel if str(rel) != "." else mount_point


def _walk_up(start: Path, stop: Path) -> list[Path]:
    dirs = [start]
    while dirs[-1] != stop and stop in dirs[-1].parents:
        dirs.append(dirs[-1].parent)
    return dirs


def cgroup_cpu_quota(root: Path = Path("/")) -> CpuQuota | None:
    """The tightest CPU quota on this process's cgroup path (v2 or v1); None when unlimited or unknown."""
    lines = (_read(root / "proc/self/cgroup") or "").splitlines()
    mounts = _mounts(root)
    best: CpuQuota | None = None

    def consider(cpus: float, source: str) -> None:
        nonlocal best
        if cpus > 0 and (best is None or cpus < best.cpus):
            best = CpuQuota(cpus, source)

    for line in lines:
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":  # cgroup v2 unified hierarchy
            mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
            point = mount.point if mount else root / "sys/fs/cgroup"
            start = _cgroup_dir(point, mount.root if mount else "/", path)
            for d in _walk_up(start, point):
                value = (_read(d / "cpu.max") or "").split()
                if len(value) == 2 and value[0] != "max":
                    try:
                        consider(int(value[0]) / int(value[1]), f"cgroup v2 cpu.max {d.relative_to(root)}")
                    except (ValueError, ZeroDivisionError):
                        continue
        elif "cpu" in controllers.split(","):  # cgroup v1 cpu controller
            mount = next((m for m in mounts if m.fstype == "cgroup" and "cpu" in m.options), None)
            point = mount.point if mount else root / "sys/fs/cgroup/cpu"
            start = _cgroup_dir(point, mount.root if mount else "/", path)
            for d in _walk_up(start, point):
                quota, period = _read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us")
                try:
                    if quota is not None and period is not None and int(quota) > 0:
                        consider(int(quota) / int(period), f"cgroup v1 cpu.cfs_quota_us {d.relative_to(root)}")
                except (ValueError, ZeroDivisionError):
                    continue
    return best


def usable_cpus(root: Path = Path("/"), affinity: set[int] | None = None) -> int:
    """Logical CPUs this process may keep busy: the affinity mask, capped by the whole CPUs of a cgroup
    quota. Threads beyond this share CPUs (the oversubscription warning's bound)."""
    cpus = affinity if affinity is not None else affinity_cpus()
    count = len(cpus) if cpus else (os.cpu_count() or 1)
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        count = min(count, quota.whole_cpus)
    return max(1, count)


def default_threads(root: Path = Path("/"), affinity: set[int] | None = None) -> tuple[int, str]:
    """(threads, how it was derived): physical cores among the usable CPUs, capped by the CPU quota."""
    cpus = affinity if affinity is not None else affinity_cpus()
    parts = []
    if cpus:
        physical = physical_cores_of(cpus, root)
        if physical is None:
            logical_all, physical_all = psutil.cpu_count(logical=True), psutil.cpu_count(logical=False)
            if logical_all and physical_all:
                physical = max(1, round(len(cpus) * physical_all / logical_all))
                parts.append(f"affinity {len(cpus)} CPUs x machine's physical/logical {physical_all}/{logical_all}")
            else:
                physical = len(cpus)
                parts.append(f"affinity {len(cpus)} CPUs (physical cores unknown)")
        else:
            parts.append(f"affinity {len(cpus)} CPUs on {physical} physical cores")
        threads = physical
    else:
        threads = psutil.cpu_count(logical=False) or os.cpu_count() or 1
        parts.append(f"{threads} cores (no affinity information)")
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        capped = quota.whole_cpus
        parts.append(f"{quota.source} = {quota.cpus:g} CPUs -> at most {capped}")
        threads = min(threads, capped)
    else:
        parts.append("no cgroup CPU quota")
    return threads, f"{threads} threads: " + "; ".join(parts)
