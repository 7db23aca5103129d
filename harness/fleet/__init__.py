"""Run the benchmark across a fleet of devices with Dask distributed.

Why Dask: it is pure Python, so a worker runs wherever the harness runs (Windows on ARM included, where
Ray ships no wheel), and its worker *resources* give the exclusive one-job-per-device scheduling a
benchmark needs. The harness adds only what is specific to benchmarking:

- `worker`: `harness fleet worker` -- a Dask worker with one thread and the resources `device-NAME` (+ one
  `tag-T` per tag), carrying the device's fingerprint to the scheduler (`fingerprint`).
- `job`: what runs on a device: an ordinary single-machine `Runner` run into a temporary directory, its
  rows streamed back to the driver as Dask events while it runs and returned in full at the end.
- `driver`: `harness run --fleet`: plans device x model jobs, merges the rows into one run directory
  (a `device` column on every row, each device's fingerprint and environment in run.json), and turns
  a lost device, a refused job or Ctrl-C into error rows or an interrupted run.
- `bydevice`: `harness compare --by device`, devices side by side as pseudo-runs of one fleet run.

Dask's wire protocol pickles task arguments and results; the scheduler port must only be reachable by
trusted machines (or use Dask's TLS settings). The harness itself sends only plain data (dicts of str,
numbers and lists) so that a version difference fails by a check, never inside an unpickled object.
"""

from __future__ import annotations

import importlib.util
import logging
import os

from harness.errors import HarnessError

RESOURCE_DEVICE = "device-"
RESOURCE_TAG = "tag-"
FINGERPRINT_KEY = "harness_fingerprint"  # key of the fingerprint in the scheduler's worker info


def require_dask() -> None:
    """One line instead of an ImportError when the `fleet` extra is not installed; then Dask's own log
    lines are quieted (`quiet_dask_logging`), since every fleet command calls this before it touches Dask."""
    if importlib.util.find_spec("distributed") is None:
        raise HarnessError("the fleet needs Dask distributed: pip install -e '.[fleet]' (on every device too)")
    quiet_dask_logging()


# Loggers that Dask configures at import (distributed.config: each with its own stderr handler and a level
# of its own, so quieting only "distributed" would leave distributed.client's warnings printing).
_DASK_LOGGERS = ("distributed", "tornado", "bokeh")


def quiet_dask_logging(level: int = logging.ERROR) -> None:
    """Raise Dask's loggers to `level` (default ERROR): its INFO/WARNING lines (worker start-up banner,
    "Stopping worker", stale scratch folders, reconnect attempts) would otherwise come before the harness's
    one-line error, and the fleet commands report every fault themselves. A user who configures Dask's
    logging through its environment variable (e.g. DASK_LOGGING__DISTRIBUTED=info) keeps that setting."""
    if any(name.startswith("DASK_LOGGING") for name in os.environ):
        return
    import distributed  # noqa: F401  (its import sets the levels this then raises: import it first)

    manager = logging.Logger.manager
    for name in [_DASK_LOGGERS[0], *list(manager.loggerDict)]:
        if name.split(".")[0] not in _DASK_LOGGERS:
            continue
        logger = logging.getLogger(name)
        if logger.level < level:  # NOTSET (0) children inherit; any explicit lower level is raised
            logger.setLevel(level)


UNREACHABLE_FIX = "start it with `dask scheduler` and check the address and port"


def probe_scheduler(address: str, timeout_s: float, fix: str = UNREACHABLE_FIX) -> None:
    """Open one Dask connection to `address` and exchange Dask's handshake, within `timeout_s` overall; a
    one-line HarnessError when that fails. Why: a port held by something that is not a Dask scheduler (an
    HTTP server, a closed or silent listener) makes Dask's client and worker fail deep inside their start-up
    -- a numpy MemoryError from a garbage frame length, a traceback, a 20 s hang in the client's cleanup --
    while this probe leaves no client or worker object behind. Refused connections are retried until the
    deadline, as Dask itself does, so a worker may still be started before its scheduler. TLS addresses are
    not probed (the probe has no certificates); Dask's own errors then apply."""
    import asyncio

    if not address.startswith("tcp://"):
        return
    require_dask()
    from distributed.comm import CommClosedError
    from distributed.comm import connect as comm_connect

    async def _handshake() -> None:
        comm = await comm_connect(address, timeout=timeout_s)  # retries refused connections until timeout_s
        await comm.close()

    mistaken = "check that it is the address `dask scheduler` printed"
    try:
        # Dask's connect bounds the retries only; its handshake read has no deadline of its own.
        asyncio.run(asyncio.wait_for(_handshake(), timeout=timeout_s + 1.0))
    except CommClosedError:  # accepted, then closed: a listener that is not Dask (or drops us)
        raise HarnessError(f"{address} closed the connection during Dask's handshake; {mistaken}") from None
    except (OSError, asyncio.TimeoutError) as exc:  # refused until the deadline, or a listener that never answers
        why = (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
        if "Timed out trying to connect" in why:
            why = "connection refused or unreachable"
        raise HarnessError(f"cannot reach the scheduler at {address} within {timeout_s:g} s ({why}); {fix}") from None
    except Exception as exc:  # a peer speaking another protocol: Dask fails on its bytes in many ways
        raise HarnessError(
            f"{address} does not answer as a Dask scheduler ({type(exc).__name__}); {mistaken}"
        ) from None


__all__ = [
    "FINGERPRINT_KEY",
    "RESOURCE_DEVICE",
    "RESOURCE_TAG",
    "UNREACHABLE_FIX",
    "probe_scheduler",
    "quiet_dask_logging",
    "require_dask",
]
