"""A fork server for the fault suite's CLI runs: `python -m harness ...` without paying the imports each time.

Why: most fault cases are one CLI invocation that ends in a usage error, and each spent ~1.5 s (more on a loaded
2-core machine) importing the harness, pandas, numpy and httpx before printing its one line. The server is one
interpreter that imports `harness.cli` once; every case is a `fork()` of it that then does what `python -m
harness ARGS` does -- its own process, stdin from /dev/null, stdout and stderr into files the test reads, the
case's environment and working directory, `sys.argv`/`sys.orig_argv` as under `-m`, `harness.__main__._run()`,
exit handlers, the exit code (a traceback is printed as the interpreter would print it).

It is used only where that is the same as a fresh interpreter: the suite's default environment (what
`faults_env()` gives) up to variables read only when a command runs (`_CALL_TIME`: the model cache, TMPDIR,
pip's); a case with any other variable of its own -- PYTHONIOENCODING, DASK_*, a fault hook -- starts a real
interpreter. Never for the signal cases (`Started`: real process groups). What a fork cannot show: a
grandchild still holding stdout open after the CLI exited (a subprocess pipe would wait for it). Set
HARNESS_FAULTS_FORK=0 to run every case in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

# The server: reads one JSON request per line on stdin, forks a child per request, answers {"id", "pid"} at
# once and {"id", "rc"} when the child ends. Single-threaded (select + waitpid), so a fork never copies a
# lock held by another thread.
SERVER = r"""
import atexit, json, os, select, signal, sys, tempfile, traceback
sys.path[0] = os.getcwd()  # as under -m: the working directory, absolute
import harness.__main__, harness.cli  # the imports every case would pay
harness.cli.build_parser()  # imports every command module (and what they import at the top)
import importlib
for name in ("harness.run", "harness.models.sources", "harness.resume", "harness.report.build", "harness.store.duck",
             "harness.scoring.rouge", "duckdb", "jieba"):
    try:  # what the commands import when they run; a missing optional one is the case's to import (and fail)
        importlib.import_module(name)
    except ImportError:
        pass

def child(req):
    rc = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            opened = os.open(path, os.O_WRONLY | os.O_TRUNC)
            os.dup2(opened, fd)
            os.close(opened)
        os.close(null)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        tempfile.tempdir = None  # recomputed from this case's TMPDIR
        sys.argv = [harness.__main__.__file__, *req["argv"]]
        sys.orig_argv = [sys.executable, "-m", "harness", *req["argv"]]
        rc = harness.__main__._run()
    except SystemExit as exc:
        code = exc.code
        if code is None:
            rc = 0
        elif isinstance(code, int):
            rc = code
        else:
            print(code, file=sys.stderr)
            rc = 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(rc if isinstance(rc, int) else 1)

def reply(obj):
    os.write(1, (json.dumps(obj) + "\n").encode())

running = {}
pending = b""
while True:
    ready, _, _ = select.select([0], [], [], 0.02)
    if ready:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                child(req)
            running[pid] = req["id"]
            reply({"id": req["id"], "pid": pid})
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        reply({"id": running.pop(pid), "rc": os.waitstatus_to_exitcode(status)})
"""

# Variables read only when a command runs (never at interpreter start or on import), so a fork given them in
# its environment behaves as a fresh interpreter would: pytest's bookkeeping, the model cache, pip's options
# (pip runs in its own process), the temporary folder (tempfile's cache is reset in the fork), the width.
_CALL_TIME = {"PYTEST_CURRENT_TEST", "HARNESS_CACHE", "HARNESS_PIP_ARGS", "TMPDIR", "COLUMNS"}


def _key(env: dict[str, str]) -> frozenset[tuple[str, str]]:
    """What must match the server's environment: everything but the call-time variables."""
    return frozenset((k, v) for k, v in env.items() if k not in _CALL_TIME and not k.startswith("PIP_"))


class _Call:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.pid: int | None = None
        self.rc: int | None = None


class ForkServer:
    """One server process for one environment; `run` is safe to call from several threads at once."""

    def __init__(self, env: dict[str, str]) -> None:
        self.key = _key(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, cwd=os.getcwd()
        )
        self._lock = threading.Lock()
        self._calls: dict[int, _Call] = {}
        self._next = 0
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            call = self._calls.get(msg["id"])
            if call is None:
                continue
            if "pid" in msg:
                call.pid = msg["pid"]
            else:
                call.rc = msg["rc"]
                call.done.set()
        for call in list(self._calls.values()):  # the server died: nobody answers any more
            call.done.set()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def run(self, argv: list[str], env: dict[str, str], timeout: float) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) of `python -m harness *argv`; subprocess.TimeoutExpired past `timeout`."""
        with tempfile.TemporaryDirectory(prefix="forkcli-") as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            out.touch()
            err.touch()
            call = _Call()
            with self._lock:
                self._next += 1
                call_id = self._next
                self._calls[call_id] = call
                request = {"id": call_id, "argv": argv, "env": env, "cwd": os.getcwd(), "stdout": str(out),
                           "stderr": str(err)}  # fmt: skip
                assert self.proc.stdin is not None
                self.proc.stdin.write((json.dumps(request) + "\n").encode())
                self.proc.stdin.flush()
            try:
                if not call.done.wait(timeout):
                    if call.pid is not None:  # as subprocess.run: kill the case, then raise
                        with _suppress_lookup():
                            os.kill(call.pid, 9)
                    call.done.wait(10)
                    raise subprocess.TimeoutExpired(["python", "-m", "harness", *argv], timeout)
            finally:
                self._calls.pop(call_id, None)
            if call.rc is None:
                raise RuntimeError("the fault suite's fork server died; rerun with HARNESS_FAULTS_FORK=0")
            return (
                call.rc,
                out.read_text(encoding="utf-8", errors="replace"),
                err.read_text(encoding="utf-8", errors="replace"),
            )

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class _suppress_lookup:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is ProcessLookupError


_SERVER: ForkServer | None = None
_SERVER_LOCK = threading.Lock()


def server_for(env: dict[str, str], default_env: dict[str, str]) -> ForkServer | None:
    """The fork server for `env`, or None where a case must start a real interpreter (its own environment,
    or HARNESS_FAULTS_FORK=0)."""
    global _SERVER
    if os.environ.get("HARNESS_FAULTS_FORK", "1") == "0" or not hasattr(os, "fork"):
        return None
    if _key(env) != _key(default_env):
        return None
    with _SERVER_LOCK:
        if _SERVER is not None and (_SERVER.key != _key(env) or not _SERVER.alive()):
            _SERVER.close()
            _SERVER = None
        if _SERVER is None:
            _SERVER = ForkServer(env)
        return _SERVER


def close_server() -> None:
    global _SERVER
    with _SERVER_LOCK:
        if _SERVER is not None:
            _SERVER.close()
            _SERVER = None
