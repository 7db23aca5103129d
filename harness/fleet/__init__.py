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

from harness.errors import HarnessError

RESOURCE_DEVICE = "device-"
RESOURCE_TAG = "tag-"
FINGERPRINT_KEY = "harness_fingerprint"  # key of the fingerprint in the scheduler's worker info



def require_dask() -> None:
    """One line instead of an ImportError when the `fleet` extra is not installed."""
    if importlib.util.find_spec("distributed") is None:
        raise HarnessError("the fleet needs Dask distributed: pip install -e '.[fleet]' (on every device too)")


__all__ = ["FINGERPRINT_KEY", "RESOURCE_DEVICE", "RESOURCE_TAG", "require_dask"]
