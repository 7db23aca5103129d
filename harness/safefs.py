"""Opening the files the harness writes so that a planted link cannot redirect a write.

Why: a run directory or the model cache may be shared, copied or tampered with. If `results.csv` is
replaced by a symbolic link to some other file, an `open(path, "a")` on resume would truncate and append
to that other file. Every file the harness writes in a run directory, a report folder, a score output or
the model cache goes through this module:

- the last path component is opened with `O_NOFOLLOW` (a symbolic link fails with ELOOP) and
  `O_NONBLOCK` (a planted FIFO cannot block the open), then `fstat` must say it is a regular file;
- new and temporary files are created with `O_CREAT | O_EXCL` (never an existing file or link);
- whole-file outputs (summary.csv, report.html, run.json, ...) are written to a fresh temporary file in
  the same folder and renamed over the target; `rename` replaces a link itself, never what it points to,
  and a target that is a link or not a regular file is refused first with one line.

Each refusal is a one-line `HarnessError` naming the file and the fix. The folders above the file are
the user's choice (an `--out` that is itself a link is fine); only the file's own name is guarded.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from harness.errors import HarnessError

NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
NONBLOCK = getattr(os, "O_NONBLOCK", 0)
BINARY = getattr(os, "O_BINARY", 0)


class UnsafePath(HarnessError):
    """A file the harness would write is a symbolic link or not a regular file."""


def refuse(path: Path, what: str) -> UnsafePath:
    return UnsafePath(
        f"{path}: {what}; the harness does not write through links or into special files (remove it and run again)"
    )


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "is a symbolic link"
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device file"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file"


def check_target(path: Path) -> bool:
    """True when `path` exists as a regular file, False when it does not exist; refuses anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise refuse(path, _kind(st.st_mode))
    return True


def open_fd(path: Path, flags: int, mode: int = 0o644) -> int:
    """`os.open` that refuses a symbolic link (O_NOFOLLOW) and anything but a regular file.

    Other OSErrors (ENOENT, ENOSPC, EACCES) propagate with `filename` set, for the caller's own message."""
    try:
        fd = os.open(path, flags | NOFOLLOW | NONBLOCK | BINARY, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP or (exc.errno == errno.EMLINK and NOFOLLOW):  # EMLINK: FreeBSD
            raise refuse(path, "is a symbolic link") from None
        if exc.errno == errno.ENXIO:  # a FIFO without a reader, opened for writing with O_NONBLOCK
            raise refuse(path, "is a FIFO (named pipe)") from None
        if exc.errno == errno.EEXIST and os.path.islink(path):
            raise refuse(path, "is a symbolic link") from None
        exc.filename = str(path)
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise refuse(path, _kind(st.st_mode))
        if NONBLOCK:
            import fcntl

            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def create_new(path: Path, mode: int = 0o644) -> int:
    """A new file opened for writing: fails if anything -- a file, a link, a FIFO -- has the name."""
    try:
        return open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        check_target(path)  # a link or special file: the one-line refusal
        raise


def replace_new(path: Path, mode: int = 0o644) -> int:
    """A fresh file at `path` for writing: a regular file left there (a stale temporary) is removed first,
    a link or special file is refused."""
    if check_target(path):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return create_new(path, mode)


def open_output(path: Path, *, append: bool = False, encoding: str = "utf-8") -> IO[str]:
    """A text stream to a user-named output file (created, or truncated/appended when it is a regular
    file); a link or special file is refused."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
    fd = open_fd(path, flags)
    return os.fdopen(fd, "a" if append else "w", encoding=encoding, newline="")


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")


@contextlib.contextmanager
def atomic_writer(path: Path, *, sync: bool = False) -> Iterator[IO[bytes]]:
    """Write `path` through a new temporary file in its folder, renamed over it when the block ends; the
    temporary is removed on any failure. The target may not be a link or a special file."""
    check_target(path)
    tmp = temp_name(path)
    fd = create_new(tmp)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        check_target(path)  # planted while we wrote: still refused, and rename would only replace the link
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: Path, data: bytes | str, *, encoding: str = "utf-8", sync: bool = False) -> None:
    """Replace `path` with `data` (see `atomic_writer`)."""
    payload = data.encode(encoding) if isinstance(data, str) else data
    with atomic_writer(path, sync=sync) as fh:
        fh.write(payload)


def read_regular(path: Path) -> bytes:
    """The bytes of a regular file, not following a final link (for files the harness also writes)."""
    fd = open_fd(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


__all__ = [
    "UnsafePath",
    "atomic_writer",
    "check_target",
    "create_new",
    "open_fd",
    "open_output",
    "read_regular",
    "replace_new",
    "temp_name",
    "write_atomic",
]
