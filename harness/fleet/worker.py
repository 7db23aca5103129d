"""`harness fleet worker`: one device joins the fleet as a Dask worker.

One thread, so Dask never runs two jobs on the device at once (a benchmark must not share its
machine), and the resources `device-NAME: 1` plus `tag-T: 1` per tag, which the driver's jobs require,
so a job lands on exactly the device it was planned for. The device's fingerprint travels in the
worker's startup information: the scheduler holds it for as long as the worker is connected.

No nanny: the benchmark's own model process is a child of the job, and Dask's memory monitor would
count it against the worker (`memory_limit=0` switches the monitor off); the harness refuses models that
do not fit the device instead (`--memory-limit`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from harness.errors import HarnessError
from harness.fleet import FINGERPRINT_KEY, RESOURCE_DEVICE, RESOURCE_TAG
from harness.fleet.fingerprint import check_name, device_fingerprint, summary_line


def worker_resources(device: str, tags: list[str]) -> dict[str, float]:
    return {f"{RESOURCE_DEVICE}{device}": 1, **{f"{RESOURCE_TAG}{t}": 1 for t in tags}}


def check_scheduler_address(address: str) -> str:
    """`tcp://HOST:PORT` (or tls://): what `dask scheduler` prints on start."""
    scheme, sep, rest = address.partition("://")
    host, colon, port = rest.rpartition(":")
    if not sep or scheme not in ("tcp", "tls") or not colon or not host or not port.isdigit():
        raise HarnessError(
            f'scheduler address "{address}" is not tcp://HOST:PORT; use the address `dask scheduler` prints, '
            f"e.g. tcp://192.168.1.10:8786"
        )
    return address


async def _serve(
    scheduler: str,
    device: str,
    tags: list[str],
    fingerprint: dict[str, Any],
    death_timeout: float,
    echo: Callable[[str], None],
) -> None:
    from distributed import Worker

    worker = Worker(
        scheduler,
        nthreads=1,
        name=device,
        resources=worker_resources(device, tags),
        memory_limit=0,
        dashboard=False,
        death_timeout=death_timeout,
        startup_information={FINGERPRINT_KEY: lambda _w: fingerprint},
    )
    try:
        await worker
    except Exception as exc:  # Dask wraps the cause in "RuntimeError: Worker failed to start."
        cause = exc.__cause__ or exc
        with contextlib.suppress(Exception):
            await worker.close()
        if "name taken" in str(cause):
            raise HarnessError(
                f'device name "{device}" is already in the fleet at {scheduler}; give this device another --device'
            ) from None
        if isinstance(cause, (OSError, TimeoutError)):
            raise HarnessError(
                f"cannot join the scheduler at {scheduler} within {death_timeout:g} s "
                f"({str(cause) or type(cause).__name__}); start it with "
                f"`dask scheduler` and check the address and port"
            ) from None
        raise
    echo(f"device {summary_line(fingerprint)}")
    echo(f"joined {scheduler} as {worker.address}; resources {', '.join(worker_resources(device, tags))}")
    await worker.finished()


def serve(
    scheduler: str,
    device: str,
    tags: list[str],
    memory_limit_bytes: int | None = None,
    death_timeout: float = 60.0,
    echo: Callable[[str], None] = print,
) -> None:
    """Run the worker until it is stopped (Ctrl-C / SIGTERM) or loses the scheduler."""
    check_scheduler_address(scheduler)
    check_name("device", device)
    for tag in tags:
        check_name("tag", tag)
    fingerprint = device_fingerprint(device, tags, memory_limit_bytes)
    try:
        asyncio.run(_serve(scheduler, device, tags, fingerprint, death_timeout, echo))
    except KeyboardInterrupt:
        echo(f"device {device} left the fleet")
