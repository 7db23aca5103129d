"""A fleet scheduler that is not there (issue 21): `fleet worker` and `run --fleet` against a port that refuses,
a listener that accepts and closes, one that never answers, and one that speaks another protocol (HTTP). Each
ends with exactly one line on stderr -- none of Dask's INFO/WARNING lines before it (harness.fleet quiets
Dask's loggers), no traceback, no numpy MemoryError from a garbage frame length -- exit 2, within a bound
stated in the test (loopback, --death-timeout 3)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from faultcli import Result, assert_one_line_error, faults_env, run_many

pytest.importorskip("distributed")

DEATH_TIMEOUT_S = 3


def _close(conn: socket.socket) -> None:
    conn.close()


def _http_answer(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 8)
    conn.close()


def _silent(conn: socket.socket) -> None:
    conn.recv(1 << 16)  # holds the connection open without a byte back, until the client gives up


@contextmanager
def _listener(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A loopback TCP listener that treats every connection with `answer`; yields its tcp:// address."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:  # the accept timeout: look at `stop` again
                continue
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def _worker(address: str) -> list[str | Path]:
    return ["fleet", "worker", "--scheduler", address, "--device", "d", "--death-timeout", str(DEATH_TIMEOUT_S)]


def _only_our_line(result: Result, *needles: str) -> None:
    line = assert_one_line_error(result, *needles)  # exit 2, one line, no traceback
    assert " - INFO - " not in result.stderr and " - WARNING - " not in result.stderr, result.explain()
    assert "MemoryError" not in result.stderr or "does not answer as a Dask scheduler" in line


def test_fleet_worker_without_a_scheduler_prints_one_line(tmp_path: Path) -> None:
    with _listener(_close) as closing, _listener(_http_answer) as http, _listener(_silent) as silent:
        cases: dict[str, list[str | Path]] = {
            "refused": _worker("tcp://127.0.0.1:1"),
            "accepts-and-closes": _worker(closing),
            "speaks-http": _worker(http),
            "never-answers": _worker(silent),
        }
        env = faults_env()
        env["TMPDIR"] = str(tmp_path)  # Dask's scratch folder (stale-lock INFO lines come from there)
        results = run_many(cases, env, workers=4)
    for name, result in results.items():
        # bound: imports (~2 s on a loaded 2-core machine) + the 3 s deadline + 1 s for the handshake read
        assert result.wall_s < 30, (name, result.explain())
    _only_our_line(results["refused"], "cannot reach the scheduler", "within 3 s", "dask scheduler")
    _only_our_line(results["never-answers"], "cannot reach the scheduler", "within 3 s")
    _only_our_line(results["accepts-and-closes"], "closed the connection during Dask's handshake")
    _only_our_line(results["speaks-http"], "does not answer as a Dask scheduler")


def test_run_fleet_without_a_scheduler_prints_one_line(tmp_path: Path) -> None:
    with _listener(_close) as closing:
        cases: dict[str, list[str | Path]] = {
            "refused": ["run", "--fleet", "tcp://127.0.0.1:1", "--talks", "alibaba-qwen", "--out", tmp_path / "o"],
            "accepts-and-closes": ["run", "--fleet", closing, "--talks", "alibaba-qwen", "--out", tmp_path / "o"],
        }
        results = run_many(cases, faults_env())
    for name, result in results.items():
        assert result.wall_s < 30, (name, result.explain())
        _only_our_line(result, "--fleet")
    assert not (tmp_path / "o").exists()


def test_run_fleet_against_a_port_that_speaks_http_prints_one_line(tmp_path: Path) -> None:
    with _listener(_http_answer) as http:
        results = run_many({"speaks-http": ["run", "--fleet", http, "--out", tmp_path / "o"]}, faults_env())
    result = results["speaks-http"]
    assert result.wall_s < 30, result.explain()  # without the probe: a traceback, then a 20 s hang in cleanup
    _only_our_line(result, "does not answer as a Dask scheduler")
