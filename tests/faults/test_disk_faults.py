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
from faultcli import assert_no_traceback, assert_one_line_error, run_args, run_cli

ALL_TALKS = "microsoft-azure,kunlun-tiangong,alibaba-qwen,qualcomm-npu,ant-codefuse"


def _rows(run_dir: Path) -> tuple[int, int]:
    """(data rows in results.csv, lines in summaries.jsonl), each file checked to end on a whole line."""
    csv_bytes = (run_dir / "results.csv").read_bytes()
    jsonl_bytes = (run_dir / "summaries.jsonl").read_bytes()
    assert csv_bytes.endswith(b"\n") and (not jsonl_bytes or jsonl_bytes.endswith(b"\n"))
    n_csv = len(list(csv.reader(csv_bytes.decode("utf-8").splitlines()))) - 1
    return n_csv, len(jsonl_bytes.decode("utf-8").splitlines())


def _readers_work(run_dir: Path, out: Path) -> None:
    compare = run_cli("compare", run_dir, run_dir)
    assert compare.returncode == 0, compare.explain()
    assert "not complete" in compare.stdout + compare.stderr  # the interrupted/failed run is flagged
    report = run_cli("report", run_dir, "--out", out)
    assert report.returncode == 0, report.explain()
    assert Path(report.stdout.strip().splitlines()[-1]).is_file()
    score = run_cli("score", run_dir)
    assert score.returncode == 0, score.explain()


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
    _readers_work(run_dir, tmp_path / "report")


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
    for argv in (["report", run_dir, "--out", tmp_path / "rep"], ["compare", run_dir, run_dir], ["score", run_dir]):
        out = run_cli(*argv)
        assert_no_traceback(out)
        assert out.returncode == 0, out.explain()
        assert "incomplete" in out.stderr and "ignored" in out.stderr, out.explain()
