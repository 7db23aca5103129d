"""The write path under faults (a write error between the two files, a real full disk, a torn last line)
and the readers' tolerance of what a cut-off run leaves behind."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.interrupts import signals_deferred
from harness.jsonl import read_objects
from harness.results import durable
from harness.results.durable import WriteFailed, committed_csv_text, csv_rows, split_torn_csv
from harness.results.writer import RunWriter

TEXT = "这是一段用来填满磁盘的演讲文本。" * 200  # ~9.6 KB of UTF-8 per summary line


def _row(i: int) -> dict[str, object]:
    return {"run_id": "r", "model": "m", "talk_id": f"t{i}", "repeat": 0, "status": "ok", "ttft_s": 0.1 * i}


def _summary(i: int) -> dict[str, object]:
    return {"model": "m", "talk_id": f"t{i}", "repeat": 0, "status": "ok", "prediction": "摘要", "source": TEXT}


def _counts(run_dir: Path) -> tuple[int, int]:
    csv_rows = len(list(csv.reader((run_dir / "results.csv").open(encoding="utf-8", newline="")))) - 1
    raw = (run_dir / "summaries.jsonl").read_bytes()
    assert raw == b"" or raw.endswith(b"\n"), "summaries.jsonl ends in a torn line"
    for line in raw.decode("utf-8").splitlines():
        json.loads(line)
    return csv_rows, len(raw.splitlines())


def _fail_on(monkeypatch: pytest.MonkeyPatch, target: Path, after_bytes: int) -> None:
    """Make os.write on `target` write `after_bytes` bytes, then fail with ENOSPC (a short, torn write)."""
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if os.path.realpath(f"/proc/self/fd/{fd}") == str(target.resolve()):
            if after_bytes and len(data) > after_bytes:
                return real_write(fd, bytes(data[:after_bytes]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(durable.os, "write", write)


@pytest.mark.parametrize("failing", ["results.csv", "summaries.jsonl"])
def test_a_write_error_in_either_file_leaves_both_at_the_same_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    w = RunWriter(tmp_path, run_id="r")
    for i in range(2):
        w.write_row(_row(i), _summary(i))
    with monkeypatch.context() as m:
        _fail_on(m, w.dir / failing, after_bytes=7)  # part of the line lands, then the disk is full
        with pytest.raises(WriteFailed) as info:
            w.write_row(_row(2), _summary(2))
    message = str(info.value)
    assert "\n" not in message and failing in message and "No space left" in message and "free" in message
    assert "2 row(s) before it are kept" in message
    assert _counts(w.dir) == (2, 2)
    w.write_row(_row(3), _summary(3))  # space came back: the writer carries on from the good offsets
    assert _counts(w.dir) == (3, 3)
    w.close()


def test_a_real_full_disk_keeps_the_files_in_step_and_run_json_writable(small_tmpfs: Path) -> None:
    w = RunWriter(small_tmpfs, run_id="r")
    w.write_run_json({"status": "running", "pad": "x" * 6000})
    written = 0
    with pytest.raises(WriteFailed, match=r"No space left on device \([0-9.]+ \w+ free\)"):
        for i in range(100):
            w.write_row(_row(i), _summary(i))
            written += 1
    assert 0 < written < 10
    assert _counts(w.dir) == (written, written)
    # the reserve was handed back: the final run.json (status failed) still fits
    w.write_run_json({"status": "failed", "pad": "x" * 6000})
    assert json.loads((w.dir / "run.json").read_text(encoding="utf-8"))["status"] == "failed"
    w.close()
    assert not (w.dir / ".space-reserve").exists()


def test_a_disk_full_at_start_is_one_line_and_leaves_no_directory(small_tmpfs: Path) -> None:
    fd = os.open(small_tmpfs / "filler", os.O_WRONLY | os.O_CREAT)
    with pytest.raises(OSError, match="No space"):
        while True:
            os.write(fd, b"\0" * 4096)
    os.close(fd)
    with pytest.raises(HarnessError) as info:
        RunWriter(small_tmpfs, run_id="r")
    assert "\n" not in str(info.value) and "No space left" in str(info.value)
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["filler"]


def test_reopen_trims_a_torn_row_and_uncommitted_jsonl(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, run_id="r")
    for i in range(2):
        w.write_row(_row(i), _summary(i))
    w.close()
    # A hard kill after the third JSONL line, inside the third CSV line:
    with (w.dir / "summaries.jsonl").open("ab") as fh:
        fh.write((json.dumps(_summary(2), ensure_ascii=False) + "\n").encode())
        fh.write(b'{"model": "m", "talk_id": "t3", "pred\xe4\xb8')
    with (w.dir / "results.csv").open("ab") as fh:
        fh.write(b'r,m,,,,,t2,0,,,,0.2,"partial')
    again = RunWriter.reopen(w.dir)
    assert again.rows_written == 2 and again.run_id == "r"
    assert _counts(w.dir) == (2, 2)
    again.write_row(_row(2), _summary(2))
    again.close()
    assert _counts(w.dir) == (3, 3)


def test_torn_csv_split_respects_quoted_newlines() -> None:
    head = 'a,b\r\n1,"x\r\ny"\r\n'
    assert split_torn_csv(head) == (head, "")
    assert split_torn_csv(head + '2,"p\r\nq') == (head, '2,"p\r\nq')
    assert split_torn_csv(head + "2,z") == (head, "2,z")


def test_csv_reader_drops_a_torn_last_row_with_a_warning(tmp_path: Path) -> None:
    w = RunWriter(tmp_path, run_id="r")
    w.write_row(_row(0), _summary(0))
    w.close()
    with w.csv_path.open("ab") as fh:
        fh.write("r,模型".encode()[:-1])  # torn inside a UTF-8 character
    warnings: list[str] = []
    text = committed_csv_text(w.csv_path, warnings.append)
    assert len(text.splitlines()) == 2 and csv_rows(text) == 1
    assert len(warnings) == 1 and "results.csv:3: last row is incomplete" in warnings[0]
    with pytest.raises(HarnessError, match="incomplete"):
        committed_csv_text(w.csv_path, None)


def test_jsonl_torn_last_line_is_tolerated_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": "\xe4\xb8')
    warnings: list[str] = []
    assert [obj for _, _, obj in read_objects(path, torn_tail=warnings.append)] == [{"a": 1}]
    assert warnings == [f"{path}:2: last line is incomplete (cut off while being written); ignored"]
    with pytest.raises(HarnessError, match=r"s\.jsonl:2: not UTF-8"):
        list(read_objects(path))
    path.write_bytes(b'{"a": 1}\n{"b": 2')  # torn JSON, valid UTF-8
    assert len(list(read_objects(path, torn_tail=warnings.append))) == 1
    path.write_bytes(b'{"a": 1}\n{"b": 2}')  # no final newline but complete: kept
    assert len(list(read_objects(path, torn_tail=warnings.append))) == 2


def test_a_torn_line_in_the_middle_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": \n{"c": 3}\n')
    with pytest.raises(HarnessError, match=r"s\.jsonl:2: not valid JSON"):
        list(read_objects(path, torn_tail=lambda _m: None))


def test_signals_are_deferred_until_the_row_is_written() -> None:
    # A second thread (as the memory sampler is) may be the one the kernel delivers the signal to.
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    seen: list[str] = []
    old = signal.signal(signal.SIGTERM, lambda *_: seen.append("handled"))
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # the handler would run here if it were not deferred
            seen.append("body done")
        seen.append("after")
    finally:
        signal.signal(signal.SIGTERM, old)
        stop.set()
    assert seen == ["body done", "handled", "after"]
