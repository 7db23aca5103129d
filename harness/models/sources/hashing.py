"""sha256 of weight files and the hash record kept beside each one.

Next to each file, `<filename>.sha256` records its hash together with its size, mtime, inode and ctime (so later runs
trust a 100 MB file without re-reading it unless it changed on disk) and, for downloads, where it came
from (`origin`). Files outside the cache (path sources) get their record under `<cache>/.sha256/`, so the
harness never writes into a user's own folders.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from harness import safefs
from harness.errors import ChecksumError
from harness.models.registry import ModelEntry, cache_dir

CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def marker(path: Path) -> Path:
    """Where the hash record of `path` lives: next to it in the cache; for files elsewhere (path
    sources), under <cache>/.sha256/."""
    root = cache_dir().resolve()
    absolute = path.resolve()
    if absolute.is_relative_to(root):
        return path.with_name(path.name + ".sha256")
    key = hashlib.sha256(str(absolute).encode("utf-8")).hexdigest()[:32]
    return root / ".sha256" / f"{key}-{path.name}.sha256"


def _identity(st: os.stat_result) -> dict[str, int]:
    """What must be unchanged for a recorded hash to be trusted: size and mtime, which a tool can restore
    after changing the bytes (touch -r, rsync -t), plus inode and ctime, which no user-level tool can set
    back (a write or utime() moves ctime; a replaced file has a new inode)."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino, "ctime_ns": st.st_ctime_ns}


def write_marker(path: Path, sha256: str, origin: dict[str, str] | None = None) -> None:
    st = path.stat()
    record: dict[str, Any] = {"sha256": sha256, **_identity(st)}
    if origin:
        record["origin"] = origin
    where = marker(path)
    where.parent.mkdir(parents=True, exist_ok=True)
    safefs.write_atomic(where, json.dumps(record) + "\n")  # never through a planted link (harness.safefs)


def read_record(path: Path) -> dict[str, Any] | None:
    """The marker's record, if it exists and the file still has the size, mtime, inode and ctime it recorded."""
    try:
        record = json.loads(marker(path).read_text(encoding="utf-8"))
        st = path.stat()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    if any(record.get(k) != v for k, v in _identity(st).items()):
        return None  # the file changed (or was touched) since it was hashed: hash it again
    return record


def read_marker(path: Path) -> str | None:
    record = read_record(path)
    sha = record.get("sha256") if record else None
    return sha if isinstance(sha, str) else None


def cached_sha256(path: Path) -> str:
    """sha256 of `path`, from its marker when still valid; otherwise hashed now and recorded."""
    sha = read_marker(path)
    if sha is None:
        sha = file_sha256(path)
        # An unwritable cache just means hashing again next time.
        with suppress(OSError):
            write_marker(path, sha)
    return sha


def verify(entry: ModelEntry, path: Path, expected: str | None, *, fix: str) -> None:
    """Raise ChecksumError when `path` does not have the pinned sha256 (nothing pinned: nothing to check)."""
    if expected is None:
        return
    actual = cached_sha256(path)
    if actual != expected:
        raise ChecksumError(f'model "{entry.id}": {path} has sha256 {actual}, models.yaml expects {expected}; {fix}')
