"""Default thread count from a fake /proc and /sys: affinity, physical cores, cgroup v1/v2 CPU quotas."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.threads import cgroup_cpu_quota, default_threads, physical_cores_of, usable_cpus

V2_MOUNT = "30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNT = "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"


def _write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _topology(root: Path, cores: dict[int, int], package: int = 0) -> None:
    """cores: logical CPU -> core id."""
    for cpu, core in cores.items():
        _write(root, f"sys/devices/system/cpu/cpu{cpu}/topology/core_id", f"{core}\n")
        _write(root, f"sys/devices/system/cpu/cpu{cpu}/topology/physical_package_id", f"{package}\n")


def test_physical_cores_count_hyperthread_siblings_once(tmp_path: Path) -> None:
    _topology(tmp_path, {0: 0, 1: 0, 2: 1, 3: 1})  # 2 cores x 2 threads
    assert physical_cores_of({0, 1, 2, 3}, tmp_path) == 2
    assert physical_cores_of({0, 2}, tmp_path) == 2
    assert physical_cores_of({0, 1}, tmp_path) == 1
    assert physical_cores_of({7}, tmp_path) is None  # no topology for cpu7


def test_cgroup_v2_quota_caps_the_physical_cores(tmp_path: Path) -> None:
    _topology(tmp_path, {0: 0, 1: 0, 2: 1, 3: 1, 4: 2, 5: 2, 6: 3, 7: 3})
    _write(tmp_path, "proc/self/mountinfo", V2_MOUNT)
    _write(tmp_path, "proc/self/cgroup", "0::/app.slice/bench\n")
    _write(tmp_path, "sys/fs/cgroup/app.slice/bench/cpu.max", "250000 100000\n")
    threads, how = default_threads(tmp_path, affinity=set(range(8)))
    assert threads == 2  # 4 physical cores, quota 2.5 CPUs -> 2
    assert "cpu.max" in how and "2.5 CPUs" in how and "4 physical cores" in how


def test_the_tightest_limit_on_the_path_wins(tmp_path: Path) -> None:
    _write(tmp_path, "proc/self/mountinfo", V2_MOUNT)
    _write(tmp_path, "proc/self/cgroup", "0::/outer/inner\n")
    _write(tmp_path, "sys/fs/cgroup/outer/inner/cpu.max", "max 100000\n")
    _write(tmp_path, "sys/fs/cgroup/outer/cpu.max", "150000 100000\n")
    _write(tmp_path, "sys/fs/cgroup/cpu.max", "max 100000\n")
    quota = cgroup_cpu_quota(tmp_path)
    assert quota is not None and quota.cpus == pytest.approx(1.5) and "outer" in quota.source
    threads, _ = default_threads(tmp_path, affinity={0, 1, 2, 3})
    assert threads == 1  # never more threads than the quota's whole CPUs
    assert usable_cpus(tmp_path, affinity={0, 1, 2, 3}) == 1
    assert usable_cpus(tmp_path / "nothing", affinity={0, 1, 2, 3}) == 4  # no cgroup files: the mask


def test_unlimited_v2_uses_physical_cores_in_the_affinity_mask(tmp_path: Path) -> None:
    _topology(tmp_path, {0: 0, 1: 0, 2: 1, 3: 1})
    _write(tmp_path, "proc/self/mountinfo", V2_MOUNT)
    _write(tmp_path, "proc/self/cgroup", "0::/\n")
    _write(tmp_path, "sys/fs/cgroup/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    threads, how = default_threads(tmp_path, affinity={0, 1, 2, 3})
    assert threads == 2 and "no cgroup CPU quota" in how
    assert default_threads(tmp_path, affinity={2, 3})[0] == 1  # pinned to the two threads of one core


def test_cgroup_v1_cfs_quota_in_a_container(tmp_path: Path) -> None:
    # In a container the cgroup path names the host's hierarchy, but the container's own cgroup is mounted.
    _write(tmp_path, "proc/self/mountinfo", V1_MOUNT.replace(" / /sys", " /docker/abc /sys"))
    _write(tmp_path, "proc/self/cgroup", "5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n")
    _write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "300000\n")
    _write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    _topology(tmp_path, {cpu: cpu for cpu in range(8)})
    threads, how = default_threads(tmp_path, affinity=set(range(8)))
    assert threads == 3 and "cgroup v1" in how


def test_v1_without_a_quota_and_a_quota_below_one_cpu(tmp_path: Path) -> None:
    _write(tmp_path, "proc/self/mountinfo", V1_MOUNT)
    _write(tmp_path, "proc/self/cgroup", "5:cpu,cpuacct:/\n")
    _write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    _write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    _write(tmp_path, "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us", "50000\n")
    _topology(tmp_path, {0: 0, 1: 1})
    assert default_threads(tmp_path, affinity={0, 1})[0] == 1  # half a CPU still runs one thread


def test_without_topology_the_machine_ratio_scales(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    monkeypatch.setattr(psutil, "cpu_count", lambda logical=True: 16 if logical else 8)
    threads, how = default_threads(tmp_path, affinity=set(range(4)))
    assert threads == 2 and "physical/logical 8/16" in how
