"""User-facing errors.

A `HarnessError` is a mistake the user can fix (bad flag, malformed file, missing model). The CLI prints
its message on one line and exits with status 2 -- no traceback. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class HarnessError(Exception):
    """A problem with the user's input or environment, with a message that names the fix."""


class ModelUnavailableError(HarnessError):
    """A model's weights are not in the cache and cannot be fetched (offline, no network, no file)."""


class ChecksumError(HarnessError):
    """Downloaded or cached weights do not match the sha256 in models.yaml."""
