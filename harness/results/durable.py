"""The run directory's write path and its readers' tolerance of a cut-off last line.

Why this exists: a run writes each row to two files, `results.csv` (the figures) and `summaries.jsonl`
(the text, for re-scoring). A full disk, a crash or a kill between the two writes must never leave them
out of step or leave a file that the readers refuse.

Writing (`AppendOnlyFile`, used by `harness.results.writer.RunWriter`):

- Each file is written through a raw descriptor (no Python buffer that could hold a half-written row and
  re-raise the same error from `close()`), and the writer remembers its *committed* length.
- A row is one unit: its JSONL line is written and fsynced first, then its CSV line, then that is fsynced.
  The CSV line is the commit record. If any write or fsync fails (ENOSPC, EIO, quota), both files are
  truncated back to their committed lengths, so they hold exactly the same rows, and the error becomes
  one line naming the file and the free space (`WriteFailed`, a `HarnessError`).
- SIGINT/SIGTERM are held back while a row is written (`signals_deferred`), so an interrupt lands between
  rows, never inside one.
- A hard kill (SIGKILL, power loss) can still stop between the two writes. The order above guarantees
  `CSV rows <= JSONL lines <= CSV rows + 1`, and a torn line is only ever the last one; `--resume`
  truncates the JSONL back to the CSV's rows, and the readers ignore (and report) a torn last line.
- `SpaceReserve`: a small file preallocated next to the results and deleted when the disk fills, so that
  run.json can still be finalised (status `failed`) after an ENOSPC.
- Every file is opened through `harness.safefs` (no following a planted link, regular files only), and
  `RunLock` holds an OS lock (`filelock`) on `<run dir>/.lock` for the run's lifetime, so that a second
  `run --resume` of a run in progress is refused instead of appending beside it.

Reading: `committed_csv_text` returns results.csv without a torn last record (a record is complete when
the text up to its newline holds an even number of `"`: CSV doubles quotes inside fields), and
`harness.jsonl.read_objects(..., torn_tail=...)` does the same for JSONL. Both report what they dropped.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import sys
import typing
from collections.abc import Callable
from pathlib import Path

from harness import safefs
from harness.errors import HarnessError

Warn = Callable[[str], None]

# Reserve: enough for a final run.json of many models, small next to any real disk; on a nearly full
# file system it shrinks to a quarter of what is free (a 64 KiB tmpfs still gets one).
RESERVE_MAX_BYTES = 256 * 1024
RESERVE_MIN_BYTES = 16 * 1024


class WriteFailed(HarnessError):
    """Writing the run directory failed (disk full, I/O error); the rows before it are intact."""


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable, keeps type checkers calm


def free_space(path: Path) -> str:
    """'12.0 KiB free' on the file system holding `path` (or its nearest existing parent)."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return f"{human_bytes(shutil.disk_usage(probe).free)} free"
    except OSError:
        return "free space unknown"


def write_failed(path: Path, exc: OSError, what: str = "") -> WriteFailed:
    """One line: the file, the OS error, the free space, and what to do."""
    reason = exc.strerror or str(exc)
    hint = "free some space or pass --out on another disk" if exc.errno in _FULL else "check the disk"
    tail = f"; {what}" if what else ""
    return WriteFailed(f"cannot write {path}: {reason} ({free_space(path)}); {hint}{tail}")


_FULL = {28, 122}  # ENOSPC, EDQUOT


class AppendOnlyFile:
    """A file appended to in committed units: `append` then `commit`, or `rollback` to the last commit."""

    def __init__(self, path: Path, *, create: bool) -> None:
        self.path = path
        # A new file: O_EXCL (never an existing file or link); an existing one (resume): read-write, so that
        # its committed part is read through the same descriptor that writes it, never through a link.
        self.fd = safefs.create_new(path) if create else safefs.open_fd(path, os.O_RDWR)
        self.committed = os.lseek(self.fd, 0, os.SEEK_END)
        self._end = self.committed

    def read_all(self) -> bytes:
        """The file's bytes as they are now (read through the open descriptor)."""
        chunks: list[bytes] = []
        os.lseek(self.fd, 0, os.SEEK_SET)  # lseek + read rather than pread: Windows has no pread
        try:
            while chunk := os.read(self.fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.lseek(self.fd, self._end, os.SEEK_SET)
        return b"".join(chunks)

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                self._end += n
                view = view[n:]
        except OSError as exc:
            exc.filename = str(self.path)
            raise

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            exc.filename = str(self.path)
            raise

    def commit(self) -> None:
        self.committed = self._end

    def rollback(self) -> None:
        """Cut the file back to its last committed length (needs no free space)."""
        if self._end != self.committed:
            os.ftruncate(self.fd, self.committed)
            os.lseek(self.fd, self.committed, os.SEEK_SET)
            self._end = self.committed

    def truncate_to(self, length: int) -> None:
        os.ftruncate(self.fd, length)
        os.lseek(self.fd, length, os.SEEK_SET)
        self.committed = self._end = length

    def close(self) -> None:
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                self.rollback()
            os.close(self.fd)
            self.fd = -1


class SpaceReserve:
    """Preallocated bytes that `release()` hands back to the file system when the disk is full."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = 0
        try:
            free = shutil.disk_usage(path.parent).free
        except OSError:
            return
        size = min(RESERVE_MAX_BYTES, max(RESERVE_MIN_BYTES, free // 4))
        if size > free // 2:
            return  # so little room that reserving would only bring the failure forward
        try:
            fd = safefs.replace_new(path)  # a planted link or FIFO is refused (UnsafePath), never written
        except OSError:
            return
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
            else:  # pragma: no cover - macOS/Windows: real blocks via zeros
                os.write(fd, b"\0" * size)
            self.size = size
        except OSError:
            self.size = 0
        finally:
            os.close(fd)
        if not self.size:
            self.release()

    def release(self) -> bool:
        """Delete the reserve; True when there was one to free."""
        had = self.size > 0
        self.size = 0
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # unlink removes a link itself, never its target
        return had


LOCK_FILE = ".lock"
LOCK_PID_FILE = ".lock.pid"


class RunLock:
    """An OS lock on `<run dir>/.lock`, held from the moment a run (or a resume) owns the directory until it
    closes; the OS drops it when the process dies, so a crashed run never leaves a stale lock behind.

    One per directory per process (`RunLock.hold` is re-entrant): the resume check and the writer of the
    same process share it. The holder's pid goes into `.lock.pid` for the message a second process gets."""

    _held: typing.ClassVar[dict[str, RunLock]] = {}

    def __init__(self, run_dir: Path) -> None:
        import filelock

        self.dir = run_dir
        self.path = run_dir / LOCK_FILE
        safefs.check_target(self.path)
        self._lock = filelock.FileLock(str(self.path), timeout=0)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            raise HarnessError(
                f"run {run_dir} is in use by {_holder(run_dir)}; wait for it to finish or stop it first"
            ) from None
        except OSError as exc:
            if exc.errno == 40:  # ELOOP: a link planted between the check and the open
                raise safefs.refuse(self.path, "is a symbolic link") from None
            raise HarnessError(f"cannot lock run {run_dir} ({exc.strerror}); check the run directory") from None
        with contextlib.suppress(OSError):  # the lock holds without it; a second process says "another process"
            safefs.write_atomic(run_dir / LOCK_PID_FILE, f"{os.getpid()}\n")

    @classmethod
    def hold(cls, run_dir: Path) -> RunLock:
        key = str(run_dir.resolve())
        lock = cls._held.get(key)
        if lock is None:
            lock = cls._held[key] = cls(run_dir)
        return lock

    @classmethod
    def release_dir(cls, run_dir: Path) -> None:
        lock = cls._held.pop(str(run_dir.resolve()), None)
        if lock is not None:
            lock.release()

    def release(self) -> None:
        with contextlib.suppress(OSError):
            (self.dir / LOCK_PID_FILE).unlink()
        with contextlib.suppress(Exception):
            self._lock.release()


def _holder(run_dir: Path) -> str:
    try:
        text = safefs.read_regular(run_dir / LOCK_PID_FILE).decode("ascii").strip()
    except (OSError, HarnessError, UnicodeDecodeError):
        return "another process"
    return f"pid {text}" if text.isdigit() else "another process"


# ---------------------------------------------------------------------------------------------------
# Reading


def stderr_warning(message: str) -> None:
    """How readers report what they tolerated (a torn last line): one line on stderr, never on stdout,
    which may be a CSV/JSON stream."""
    print(f"harness: warning: {message}", file=sys.stderr)


def split_torn_csv(text: str) -> tuple[str, str]:
    """(complete records, torn tail). A complete CSV text ends with a newline outside quotes."""
    if not text or (text.endswith("\n") and text.count('"') % 2 == 0):
        return text, ""
    cut = len(text)
    while True:
        cut = text.rfind("\n", 0, cut)
        if cut < 0:
            return "", text
        if text.count('"', 0, cut + 1) % 2 == 0:
            return text[: cut + 1], text[cut + 1 :]


def committed_csv_bytes(data: bytes) -> tuple[bytes, bytes]:
    """(complete records, torn tail) of a results.csv's bytes; the tail is b"" for a whole file."""
    if not data or (data.endswith(b"\n") and data.count(b'"') % 2 == 0):
        return data, b""
    head, _ = split_torn_csv(data.decode("utf-8", errors="surrogateescape"))
    good = head.encode("utf-8", errors="surrogateescape")
    return good, data[len(good) :]


def committed_csv_text(path: Path, warn: Warn | None) -> str:
    """results.csv as text without a torn last record; `warn` hears about one (None: it is an error)."""
    good, torn = committed_csv_bytes(path.read_bytes())
    if torn:
        if warn is None:
            raise HarnessError(f"{path}: the last row is incomplete (the run was cut off while writing it)")
        lineno = good.count(b"\n") + 1
        warn(
            f"{path}:{lineno}: last row is incomplete ({len(torn)} bytes, the run was cut off while writing it); "
            "ignored"
        )
    return decode_csv(good, path)


def decode_csv(data: bytes, path: Path) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        lineno = data[: exc.start].count(b"\n") + 1
        raise HarnessError(f"{path}:{lineno}: not UTF-8 text ({exc.reason}); is this a results.csv?") from None


def csv_rows(text: str) -> int:
    """Data rows of a results.csv's text (header excluded)."""
    return max(0, sum(1 for _ in csv.reader(io.StringIO(text, newline=""))) - 1)


__all__ = [
    "AppendOnlyFile",
    "RunLock",
    "SpaceReserve",
    "WriteFailed",
    "committed_csv_bytes",
    "committed_csv_text",
    "csv_rows",
    "decode_csv",
    "free_space",
    "split_torn_csv",
    "stderr_warning",
    "write_failed",
]
