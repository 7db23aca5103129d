"""Outputs that cannot be written (issue 21): `report --out`, `score --out`, `db export --parquet`, `db ingest` on a
full (ENOSPC) or read-only (EROFS) file system -- a real 64 KiB tmpfs, remounted read-only for EROFS. Each is one
line naming the path and the fix, exit 2, no traceback, and no truncated file left to pass for a result. Also the
store's own promises: `db query` is read-only (one statement; no COPY/ATTACH writing files), a `row_index` column
in results.csv ingests, and `compare --db` leaves no harness-db-* folder behind."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultcli import assert_no_traceback, assert_one_line_error, faults_env, run_cli, run_many

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: the synthetic run factory
from runfactory import make_run

pytest.importorskip("duckdb")


def _fill(mount: Path, leave: int = 0) -> None:
    """Fill the file system but `leave` bytes (ENOSPC at the next write beyond them)."""
    st = os.statvfs(mount)
    free = st.f_bavail * st.f_frsize
    (mount / "filler").write_bytes(b"\0" * max(0, free - leave))


@pytest.fixture
def read_only_fs(small_tmpfs: Path) -> Iterator[Path]:
    """The 64 KiB tmpfs remounted read-only (EROFS); skipped where remounting is not allowed."""
    proc = subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot remount read-only: {proc.stderr.strip()}")
    yield small_tmpfs


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs", "run-a")


def test_report_into_a_full_disk_is_one_line(small_tmpfs: Path, run_dir: Path) -> None:
    result = run_cli("report", run_dir, "--out", small_tmpfs / "rep")
    assert_one_line_error(result, "cannot write the report", "No space left on device", "--out")


def test_report_into_a_read_only_disk_is_one_line(read_only_fs: Path, run_dir: Path) -> None:
    result = run_cli("report", run_dir, "--out", read_only_fs / "rep")
    assert_one_line_error(result, "cannot write the report", "Read-only file system")


def test_score_into_a_full_disk_leaves_no_truncated_file(small_tmpfs: Path, run_dir: Path) -> None:
    _fill(small_tmpfs, leave=0)
    out = small_tmpfs / "scores.jsonl"
    result = run_cli("score", run_dir, "--out", out)
    assert_one_line_error(result, "--out", "No space left on device", "nothing kept")
    assert not out.exists()


def test_db_export_to_a_read_only_disk_is_one_line(read_only_fs: Path, run_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert run_cli("db", "ingest", run_dir, "--db", db).returncode == 0
    result = run_cli("db", "export", "--db", db, "--parquet", read_only_fs / "pq")
    assert_one_line_error(result, "cannot write Parquet files", "--parquet")


def test_db_ingest_into_a_full_disk_is_one_line_and_keeps_nothing_half_written(
    small_tmpfs: Path, run_dir: Path
) -> None:
    _fill(small_tmpfs, leave=4096)  # the store is created, then the disk fills mid-transaction
    result = run_cli("db", "ingest", run_dir, "--db", small_tmpfs / "s.duckdb")
    assert result.returncode == 2, result.explain()
    assert_no_traceback(result)
    assert len(result.stderr.strip().splitlines()) == 1, result.explain()
    assert "results store" in result.stderr and "--db" in result.stderr


@pytest.fixture
def store_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs for a store (64 KiB is less than an empty DuckDB file); skipped where mounting is not
    allowed (needs root/CAP_SYS_ADMIN)."""
    mount_point = tmp_path / "store-fs"
    mount_point.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True,
                          text=True)  # fmt: skip
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _store_snapshot(db: Path) -> tuple[object, ...]:
    """Everything the store holds, in a fixed order (read-only)."""
    from harness.store import query

    return tuple(
        query(db, f"SELECT * EXCLUDE (ingested_at) FROM {table} ORDER BY ALL" if table == "runs"
              else f"SELECT * FROM {table} ORDER BY ALL")[1]
        for table in ("runs", "rows", "devices", "summaries")
    )  # fmt: skip


def test_db_ingest_that_fills_the_disk_mid_transaction_leaves_the_store_as_it_was(
    store_tmpfs: Path, run_dir: Path, tmp_path: Path
) -> None:
    """A store holding run-a; the disk is then filled but 64 KiB, and a bigger run-a (same id: its old rows are
    deleted inside the transaction) is ingested: the write fails mid-transaction, the transaction is rolled back
    -- the store holds exactly what it held, old run-a included -- and once space is freed an ingest works."""
    db = store_tmpfs / "s.duckdb"
    first = run_cli("db", "ingest", run_dir, "--db", db)
    assert first.returncode == 0, first.explain()
    before = _store_snapshot(db)
    bigger = make_run(tmp_path / "bigger", "run-a", models=[f"m{i}" for i in range(20)],
                      talks=[f"t{i}" for i in range(5)], repeats=5)  # fmt: skip  # 500 rows: far past 64 KiB
    _fill(store_tmpfs, leave=64 * 1024)
    result = run_cli("db", "ingest", bigger, "--db", db)
    line = assert_one_line_error(result, "cannot write the results store", "--db", "the store is unchanged")
    assert "cannot open" not in line  # it failed while writing, not on opening the store
    (store_tmpfs / "filler").unlink()
    assert _store_snapshot(db) == before  # rolled back: run-a's 12 old rows, nothing of the 500
    again = run_cli("db", "ingest", bigger, "--db", db)
    assert again.returncode == 0 and "replaced run run-a: 500 row(s)" in again.stdout, again.explain()


# --- the store's own promises --------------------------------------------------------------------------------
def test_db_query_is_really_read_only(run_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert run_cli("db", "ingest", run_dir, "--db", db).returncode == 0
    leak = tmp_path / "leak.csv"
    cases = {
        "two-statements": ["db", "query", "select 1; select 2", "--db", db],
        "copy-to": ["db", "query", f"COPY rows TO '{leak}'", "--db", db],
        "attach": ["db", "query", f"ATTACH '{tmp_path / 'other.duckdb'}'", "--db", db],
        "install": ["db", "query", "INSTALL httpfs", "--db", db],
        "delete": ["db", "query", "DELETE FROM rows", "--db", db],
    }
    results = run_many(cases, faults_env())
    for name, result in results.items():
        assert result.returncode == 2, (name, result.explain())
        assert_no_traceback(result)
    assert "one SQL statement" in results["two-statements"].stderr
    assert not leak.exists() and not (tmp_path / "other.duckdb").exists()
    count = run_cli("db", "query", "select count(*) from rows", "--db", db, "--format", "csv")
    assert count.stdout.strip().splitlines()[-1] == "12"  # DELETE did nothing


def test_a_row_index_column_in_results_csv_ingests(tmp_path: Path) -> None:
    from harness.results.schema import COLUMNS

    run = make_run(tmp_path / "runs", "run-r", columns=[*COLUMNS, "row_index"], overrides={"row_index": 7})
    result = run_cli("db", "ingest", run, "--db", tmp_path / "s.duckdb")
    assert result.returncode == 0, result.explain()
    kept = run_cli("db", "query", "select distinct row_index_csv from rows", "--db", tmp_path / "s.duckdb",
                   "--format", "csv")  # fmt: skip
    assert kept.stdout.strip().splitlines()[-1] in ("7", "7.0")


def test_compare_from_the_store_leaves_no_temporary_folder(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    runs = [make_run(tmp_path / "runs", name, seed=i) for i, name in enumerate(("run-a", "run-b"))]
    assert run_cli("db", "ingest", *runs, "--db", db).returncode == 0
    env = faults_env()
    env["TMPDIR"] = str(tmp_path / "tmp")
    (tmp_path / "tmp").mkdir()
    result = run_cli("compare", "run-a", "run-b", "--db", db, env=env)
    assert result.returncode == 0, result.explain()
    assert not [p.name for p in (tmp_path / "tmp").iterdir() if p.name.startswith("harness-db-")]
