"""A full disk and a run cut off mid-write, through the real CLI: one line (file + free space), no
traceback, results.csv and summaries.jsonl in step, and `report`, `compare`, `score` still read the
directory (reporting a torn last line instead of refusing it)."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from faultcli import Result, assert_no_traceback, assert_one_line_error, faults_env, run_args, run_cli, run_many

ALL_TALKS = "microsoft-azure,kunlun-tiangong,alibaba-qwen,qualcomm-npu,ant-codefuse"


def _rows(run_dir: Path) -> tuple[int, int]:
    """(data rows in results.csv, lines in summaries.jsonl), each file checked to end on a whole line."""
    csv_bytes = (run_dir / "results.csv").read_bytes()
    jsonl_bytes = (run_dir / "summaries.jsonl").read_bytes()
    assert csv_bytes.endswith(b"\n") and (not jsonl_bytes or jsonl_bytes.endswith(b"\n"))
    n_csv = len(list(csv.reader(csv_bytes.decode("utf-8").splitlines()))) - 1
    return n_csv, len(jsonl_bytes.decode("utf-8").splitlines())


def _readers(run_dir: Path, out: Path) -> dict[str, Result]:
    """report, compare and score over one run directory (at once: they only read)."""
    cases: dict[str, list[str | Path]] = {
        "report": ["report", run_dir, "--out", out],
        "compare": ["compare", run_dir, run_dir],
        "score": ["score", run_dir],
    }
    results = run_many(cases, faults_env())
    for result in results.values():
        assert_no_traceback(result)
        assert result.returncode == 0, result.explain()
    assert Path(results["report"].stdout.strip().splitlines()[-1]).is_file()
    return results


def test_a_run_into_a_full_disk_is_one_line_and_stays_readable(
    small_tmpfs: Path, tmp_path: Path, dummy_models: Callable[..., Path]
) -> None:
    models = dummy_models(m={})
    result = run_cli(*run_args(models, small_tmpfs, "m", "--talks", ALL_TALKS, "--repeats", "3"))
    line = assert_one_line_error(result, "No space left on device", "free", str(small_tmpfs))
    assert "results.csv" in line or "summaries.jsonl" in line or "run.json" in line
    (run_dir,) = list(small_tmpfs.iterdir())
    n_csv, n_jsonl = _rows(run_dir)
    assert n_csv == n_jsonl > 0, line
    record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert record["status"] == "failed" and record["written_rows"] == n_csv
    assert "No space left" in record["failure"]
    readers = _readers(run_dir, tmp_path / "report")
    for name in ("report", "compare"):  # the failed run is flagged
        assert "not complete (status failed" in readers[name].stderr, readers[name].explain()


def test_a_disk_already_full_is_one_line_and_leaves_nothing(
    small_tmpfs: Path, dummy_models: Callable[..., Path]
) -> None:
    fd = os.open(small_tmpfs / "filler", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError, match="No space"):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    result = run_cli(*run_args(dummy_models(m={}), small_tmpfs, "m"))
    assert_one_line_error(result, "No space left on device", "free")
    assert [p.name for p in small_tmpfs.iterdir()] == ["filler"]


def test_readers_report_a_torn_last_line_instead_of_refusing(
    tmp_path: Path, dummy_models: Callable[..., Path]
) -> None:
    result = run_cli(*run_args(dummy_models(m={}), tmp_path / "runs", "m"))
    assert result.returncode == 0, result.explain()
    run_dir = result.run_dir
    # What a power cut while writing the next row leaves: a torn JSONL line, then a torn CSV line.
    with (run_dir / "summaries.jsonl").open("ab") as fh:
        fh.write('{"model": "m", "talk_id": "x", "prediction": "半'.encode()[:-1])
    with (run_dir / "results.csv").open("ab") as fh:
        fh.write("r,m,dummy,模".encode()[:-2])
    for out in _readers(run_dir, tmp_path / "rep").values():
        assert "incomplete" in out.stderr and "ignored" in out.stderr, out.explain()
