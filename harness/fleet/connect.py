"""The driver's side of the scheduler: connecting, checking Dask versions, finding and choosing devices.

`connect` gives a Dask client (or one line when the scheduler cannot be reached), `check_scheduler_versions`
refuses a scheduler whose Dask packages differ from the driver's, `discover` lists the harness devices that
joined (each with the fingerprint its worker published), `select_devices` applies `--devices`, and
`device_refusal` says why a device cannot take a job at all (another harness or Dask version).
"""

from __future__ import annotations

import socket
import warnings
from dataclasses import dataclass, field
from typing import Any

from harness import __version__
from harness.errors import HarnessError, unknown
from harness.fleet import FINGERPRINT_KEY, RESOURCE_TAG, probe_scheduler, require_dask
from harness.fleet.worker import check_scheduler_address

# Dask packages whose versions must agree between driver, scheduler and devices (Dask's own list, less
# the optional ones): a mismatch breaks the wire protocol in ways that surface far from the cause.
DASK_PACKAGES = ("dask", "distributed", "msgpack", "cloudpickle", "tornado", "toolz")
CONNECT_TIMEOUT_S = 10.0


@dataclass
class Device:
    """A harness device connected to the scheduler: its Dask worker, tags and published fingerprint."""

    name: str
    address: str
    tags: list[str]
    fingerprint: dict[str, Any]
    dask_versions: dict[str, str | None] = field(default_factory=dict)


def connect(address: str) -> Any:
    """A Dask client for `address`, or a one-line HarnessError."""
    check_scheduler_address(address)
    require_dask()
    from distributed import Client

    host, _, port = address.partition("://")[2].rpartition(":")
    try:  # a refused port fails here at once; Dask's client would retry until its timeout
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise HarnessError(
            f"cannot reach the scheduler at {address} ({exc.strerror or exc}); start it with `dask scheduler` "
            f"and check --fleet"
        ) from None
    # A port held by something that is not a Dask scheduler fails inside Client() with a traceback (a numpy
    # MemoryError from a garbage frame length), then a 20 s hang in the client's cleanup: probe first.
    try:
        probe_scheduler(address, CONNECT_TIMEOUT_S, fix="start it with `dask scheduler` and check --fleet")
    except HarnessError as exc:  # name the option the address came from
        raise HarnessError(f"--fleet: {exc}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Dask's multi-line version table: checked below in one line
            return Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise HarnessError(
            f"cannot reach the scheduler at {address} ({str(exc).splitlines()[0]}); start it with "
            f"`dask scheduler` and check --fleet"
        ) from None


def version_mismatch(mine: dict[str, Any], theirs: dict[str, Any], where: str) -> str | None:
    """One line naming the Dask packages (and Python minor version) that differ, or None."""
    diffs = []
    my_pkgs, their_pkgs = mine.get("packages", {}), theirs.get("packages", {})
    for pkg in DASK_PACKAGES:
        a, b = my_pkgs.get(pkg), their_pkgs.get(pkg)
        if a and b and a != b:
            diffs.append(f"{pkg} {a} here vs {b} on {where}")
    py_a = ".".join(str(mine.get("host", {}).get("python", "")).split(".")[:2])
    py_b = ".".join(str(theirs.get("host", {}).get("python", "")).split(".")[:2])
    if py_a and py_b and py_a != py_b:
        diffs.append(f"Python {py_a} here vs {py_b} on {where}")
    return "; ".join(diffs) or None


def check_scheduler_versions(client: Any, address: str) -> dict[str, Any]:
    versions = client.get_versions(check=False)
    mismatch = version_mismatch(versions["client"], versions["scheduler"], "the scheduler")
    if mismatch:
        raise HarnessError(
            f"Dask versions differ between this driver and the scheduler at {address}: {mismatch}; install the "
            f"same dask[distributed] (pip install -e '.[fleet]') on the driver, the scheduler and every device"
        )
    return versions


def discover(client: Any, versions: dict[str, Any] | None = None) -> dict[str, Device]:
    """Harness devices connected to the scheduler, by name (plain Dask workers are ignored)."""
    info = client.scheduler_info(n_workers=-1)
    worker_versions = (versions or {}).get("workers", {})
    devices: dict[str, Device] = {}
    for address, w in info.get("workers", {}).items():
        fp = w.get(FINGERPRINT_KEY)
        if not isinstance(fp, dict):
            continue
        resources = w.get("resources") or {}
        tags = sorted(r[len(RESOURCE_TAG) :] for r in resources if r.startswith(RESOURCE_TAG))
        pkgs = (worker_versions.get(address) or {}).get("packages", {})
        devices[str(w.get("name"))] = Device(str(w.get("name")), address, tags, fp, pkgs)
    return devices


def live_device_names(client: Any) -> set[str]:
    info = client.scheduler_info(n_workers=-1)
    return {str(w.get("name")) for w in info.get("workers", {}).values() if w.get(FINGERPRINT_KEY)}


def select_devices(fleet: dict[str, Device], spec: str, address: str) -> list[Device]:
    """`all`, `NAME,NAME`, `tag:T` (and mixes: `a,tag:npu`) -> devices, in name order."""
    if not fleet:
        raise HarnessError(
            f"no harness device has joined the scheduler at {address}; start one on each device with "
            f"`harness fleet worker --scheduler {address} --device NAME`"
        )
    chosen: dict[str, Device] = {}
    for item in [s.strip() for s in spec.split(",") if s.strip()] or ["all"]:
        if item == "all":
            chosen.update(fleet)
        elif item.startswith("tag:"):
            tag = item[4:]
            hits = {n: d for n, d in fleet.items() if tag in d.tags}
            if not hits:
                known = sorted({t for d in fleet.values() for t in d.tags})
                raise HarnessError(
                    f'no device has tag "{tag}"; tags in the fleet: {", ".join(known) or "none"} '
                    f"(give a device tags with `harness fleet worker --tags`)"
                )
            chosen.update(hits)
        elif item in fleet:
            chosen[item] = fleet[item]
        else:
            raise unknown("device", item, fleet)
    return [chosen[n] for n in sorted(chosen)]


def device_refusal(device: Device) -> str | None:
    """Why `device` cannot take any job of this driver (another harness or Dask version), else None."""
    fp = device.fingerprint
    if fp.get("harness_version") != __version__:
        return f"it runs harness {fp.get('harness_version')}, the driver {__version__}; install the same version"
    from distributed.versions import get_versions

    mismatch = version_mismatch(
        {"packages": get_versions()["packages"]}, {"packages": device.dask_versions}, f"device {device.name}"
    )
    return f"Dask versions differ: {mismatch}" if mismatch else None


__all__ = [
    "CONNECT_TIMEOUT_S",
    "DASK_PACKAGES",
    "Device",
    "check_scheduler_versions",
    "connect",
    "device_refusal",
    "discover",
    "live_device_names",
    "select_devices",
    "version_mismatch",
]
