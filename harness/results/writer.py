"""Run directory writer. Every row is on disk (fsynced) as soon as it is complete, so an interrupted or
crashed run keeps every finished sample.

    <out>/<run_id>/results.csv      one row per model x talk x repeat (schema.COLUMNS)
    <out>/<run_id>/summaries.jsonl  generated text per row, with references and source for re-scoring
    <out>/<run_id>/summary.csv      per model x talk aggregate over repeats (written at the end)
    <out>/<run_id>/run.json         configuration, environment, models, overhead, status

A row goes to both files as one unit: JSONL line first, CSV line last (the commit), rolled back together
on any write error, so the two files always hold the same rows -- see `harness.results.durable` for the
design and what a hard kill can leave (at most one uncommitted JSONL line, trimmed by `reopen`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import safefs
from harness.errors import HarnessError
from harness.interrupts import signals_deferred
from harness.results.durable import (
    AppendOnlyFile,
    RunLock,
    SpaceReserve,
    committed_csv_bytes,
    csv_rows,
    decode_csv,
    write_failed,
)
from harness.results.layout import RESULTS_CSV, RUN_JSON, SUMMARIES_JSONL
from harness.results.record import SCHEMA_VERSION, RunRecord
from harness.results.schema import COLUMNS

RESERVE = ".space-reserve"


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(2)


def format_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return ""
        return f"{value:.6g}"
    return str(value)


def _csv_line(values: list[str]) -> bytes:
    buf = io.StringIO(newline="")
    csv.writer(buf).writerow(values)
    # A lone surrogate (e.g. a server's "\ud800" escape) cannot be UTF-8: written escaped, never a crash.
    return buf.getvalue().encode("utf-8", errors="backslashreplace")


class RunWriter:
    """Writes one run directory. `RunWriter(out)` starts a new one; `RunWriter.reopen(dir)` appends to an
    existing one (`harness run --resume`)."""

    def __init__(self, out_dir: Path, run_id: str | None = None, *, _existing: Path | None = None) -> None:
        if _existing is not None:
            self.dir = _existing
            self.run_id = _existing.name
        else:
            self.run_id = run_id or new_run_id()
            self.dir = out_dir / self.run_id
        self.csv_path = self.dir / RESULTS_CSV
        self.summaries_path = self.dir / SUMMARIES_JSONL
        self.run_json_path = self.dir / RUN_JSON
        self.rows_written = 0
        self.created = _existing is None  # False for a reopened (resumed) run: never removed by discard
        if _existing is None:
            self._create()
        else:
            # Held until close(): a second `run --resume` of this directory is refused while it runs.
            self._lock = RunLock.hold(self.dir)
            try:
                self._open_existing()
            except BaseException:
                RunLock.release_dir(self.dir)
                raise
        try:
            self._reserve = SpaceReserve(self.dir / RESERVE)
        except HarnessError:
            self._close_files()
            if self.created:
                self._remove_dir()
            RunLock.release_dir(self.dir)
            raise

    # -- opening ---------------------------------------------------------------------------------------
    def _create(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise HarnessError(f"run directory {self.dir} already exists; pick another --out") from None
        except OSError as exc:
            if exc.errno in (28, 122):
                raise write_failed(self.dir, exc, "nothing was written") from None
            raise HarnessError(f"cannot create run directory {self.dir}: {exc.strerror}; check --out") from None
        try:
            self._lock = RunLock.hold(self.dir)
        except HarnessError:
            self._remove_dir()
            raise
        try:
            self._csv = AppendOnlyFile(self.csv_path, create=True)
            self._jsonl = AppendOnlyFile(self.summaries_path, create=True)
            self._csv.append(_csv_line(list(COLUMNS)))
            self._csv.sync()
            self._csv.commit()
        except OSError as exc:
            # A disk already full at start: leave nothing behind but the one-line error.
            path = Path(exc.filename) if exc.filename else self.dir
            err = write_failed(path, exc, "nothing was written")
            self._remove_dir()
            raise err from None
        except HarnessError:  # a link planted in the new directory (safefs): nothing is written through it
            self._remove_dir()
            raise

    def _open_existing(self) -> None:
        safefs.check_target(self.csv_path)
        if not self.csv_path.is_file():
            raise HarnessError(f"{self.dir}: no {RESULTS_CSV}; --resume needs a run directory written by harness run")
        try:
            # Opened first (no link followed, regular files only), then read through the same descriptors:
            # what is truncated and appended to is exactly what was checked.
            self._csv = AppendOnlyFile(self.csv_path, create=False)
            if not safefs.check_target(self.summaries_path):
                os.close(safefs.create_new(self.summaries_path))
            self._jsonl = AppendOnlyFile(self.summaries_path, create=False)
        except OSError as exc:
            self._close_files()
            raise write_failed(Path(exc.filename or self.dir), exc) from None
        except HarnessError:
            self._close_files()
            raise
        good, _torn = committed_csv_bytes(self._csv.read_all())
        try:
            text = decode_csv(good, self.csv_path)
        except HarnessError:
            self._close_files()
            raise
        rows = csv_rows(text)
        if not text:
            self._close_files()
            raise HarnessError(f"{self.csv_path}: no header; this run directory cannot be resumed, start a new run")
        keep_jsonl = 0
        for n, line in enumerate(self._jsonl.read_all().splitlines(keepends=True)):
            if n >= rows or not line.endswith(b"\n"):
                break
            keep_jsonl += len(line)
        try:
            self._csv.truncate_to(len(good))
            self._jsonl.truncate_to(keep_jsonl)
        except OSError as exc:
            self._close_files()
            raise write_failed(Path(exc.filename or self.dir), exc) from None
        self.rows_written = rows

    def _close_files(self) -> None:
        for name in ("_csv", "_jsonl"):
            fh = getattr(self, name, None)
            if fh is not None:
                with contextlib.suppress(OSError):
                    fh.close()

    @classmethod
    def reopen(cls, run_dir: Path) -> RunWriter:
        """Append to an existing run: a torn last row, and JSONL lines past the CSV's rows, are trimmed."""
        return cls(run_dir.parent, _existing=run_dir)

    def _remove_dir(self) -> None:
        self._close_files()
        RunLock.release_dir(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- writing ---------------------------------------------------------------------------------------
    def write_row(self, row: dict[str, Any], summary: dict[str, Any]) -> None:
        """Append one row to results.csv and summaries.jsonl as one unit; `WriteFailed` leaves neither."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ValueError(f"row has columns not in the schema: {sorted(unknown)}")
        csv_bytes = _csv_line([format_cell(row.get(c)) for c in COLUMNS])
        jsonl_bytes = (json.dumps(summary, ensure_ascii=False) + "\n").encode("utf-8", errors="backslashreplace")
        with signals_deferred():
            target = self._jsonl
            try:
                self._jsonl.append(jsonl_bytes)
                self._jsonl.sync()
                target = self._csv
                self._csv.append(csv_bytes)
                self._csv.sync()
            except OSError as exc:
                for fh in (self._csv, self._jsonl):
                    with contextlib.suppress(OSError):
                        fh.rollback()
                error = write_failed(
                    target.path, exc, f"the {self.rows_written} row(s) before it are kept in {self.dir}"
                )
                self._reserve.release()  # room for run.json's final status
                raise error from None
            self._jsonl.commit()
            self._csv.commit()
        self.rows_written += 1

    def write_run_json(self, record: Any) -> None:
        """Replace run.json atomically (temp file + rename). `record` is a dict or has `to_dict()`.
        On a full disk the space reserve is released and the write retried once."""
        # Written through the typed record (harness.results.record), the type report and compare read it back
        # with: a dict is checked and normalised by it, and the schema version is stamped.
        if not hasattr(record, "to_dict"):
            record = RunRecord.from_dict({"schema_version": SCHEMA_VERSION, **record})
        data = record.to_dict()
        # Lone surrogates (which UTF-8 cannot hold) are escaped rather than crashing the write of the record.
        text = json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n"
        payload = text.encode("utf-8", errors="backslashreplace")
        for attempt in (0, 1):
            try:
                with signals_deferred():
                    # A fresh temporary (O_EXCL, random name) renamed over run.json: a planted run.json.tmp or
                    # run.json link is never written through (safefs).
                    safefs.write_atomic(self.run_json_path, payload)
                return
            except OSError as exc:
                if attempt == 0 and self._reserve.release():
                    continue
                raise write_failed(self.run_json_path, exc) from None

    def release_reserve(self) -> None:
        """Hand the space reserve back (a failed run uses it for summary files and run.json)."""
        self._reserve.release()

    def close(self) -> None:
        self._close_files()
        self._reserve.release()
        RunLock.release_dir(self.dir)

    def discard_if_empty(self) -> bool:
        """Remove a new run directory that has no rows (a run that failed before its first sample). A
        reopened run's directory is the user's earlier run: it is closed, never removed."""
        if self.rows_written or not self.created:
            self.close()
            return False
        self._reserve.release()
        self._remove_dir()
        return True

