"""Helpers of the fault suite (see conftest.py): run the real CLI, read what it left, check errors.

The fault suite (issue 11): hostile input and a flaky machine, each case through the real CLI.

Every case runs `python -m harness ...` in a subprocess -- the user's view: exit code, what stderr says,
what is left on disk -- with the model-free `dummy` backend (known rates, scripted crashes) or the
generated `tiny-qwen2`. Faults are real where that is cheap: a 64 KiB tmpfs for a full disk, SIGSTOP for
a stalled worker, SIGKILL/SIGTERM/SIGINT for signals, crafted wheels and templates for hostile files.
The number of cases is printed at the end of the session. `run_cli` forks a pre-imported server where the
environment allows (forkcli.py): the same process a fresh interpreter would be, without its imports.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FAULTS_DIR = Path(__file__).resolve().parent

DUMMY_ENTRY = """\
- id: {id}
  backend: dummy
  quant: none
  n_ctx: 4096
  prompt_style: chat
  source: {{kind: path, path: {path}}}
  flags: {opts}
"""


@dataclass
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_s: float

    @property
    def run_dir(self) -> Path:
        """The last line a run prints is its run directory."""
        lines = self.stdout.strip().splitlines()
        assert lines, f"no output from {self.argv}: {self.stderr}"
        return Path(lines[-1])

    def explain(self) -> str:
        return f"argv {self.argv}\nrc {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def harness_argv(*args: str | Path) -> list[str]:
    return [sys.executable, "-m", "harness", *map(str, args)]


def faults_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "160"
    return env


def run_cli(*args: str | Path, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
    """`python -m harness ARGS` to its end: a fork of the suite's pre-imported server where the environment is
    the default one (forkcli.py: the same process a fresh interpreter would be, without ~1.5 s of imports),
    else a fresh interpreter."""
    from forkcli import server_for

    argv = harness_argv(*args)
    env = env or faults_env()
    t0 = time.monotonic()
    server = server_for(env, faults_env())
    if server is not None:
        rc, out, err = server.run([str(a) for a in args], env, timeout)
        return Result(argv, rc, out, err, time.monotonic() - t0)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    return Result(argv, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)


def run_many(cases: dict[str, list[str | Path]], env: dict[str, str], workers: int = 3) -> dict[str, Result]:
    """Run independent CLI invocations a few at a time (each is mostly interpreter start-up and imports,
    so on 2 cores three at once take about half the wall time); results by case name."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(run_cli, *argv, env=env) for name, argv in cases.items()}
        return {name: future.result() for name, future in futures.items()}


def assert_no_traceback(result: Result) -> None:
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.explain()


def assert_one_line_error(result: Result, *needles: str) -> str:
    """Exit 2, stderr is exactly one line, no traceback, and it names each of `needles`."""
    assert result.returncode == 2, result.explain()
    assert_no_traceback(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.explain()
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in: {lines[0]}"
    return lines[0]


class Started:
    """A CLI run in the background, in its own process group, for signal cases."""

    def __init__(self, *args: str | Path, env: dict[str, str] | None = None) -> None:
        self.argv = harness_argv(*args)
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or faults_env(),
            start_new_session=True,
        )
        self.lines: list[str] = []

    def wait_for_line(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        """Read stdout until a line matches (the run's progress lines tell where it is)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no matching line within {timeout} s; got:\n{''.join(self.lines)}")

    def worker_pids(self) -> list[int]:
        import psutil

        return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]

    def finish(self, timeout: float = 60) -> Result:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            out, err = self.proc.communicate()
            raise AssertionError(
                f"{self.argv} still running after {timeout} s:\n{''.join(self.lines)}{out}{err}"
            ) from None
        return Result(self.argv, self.proc.returncode, "".join(self.lines) + out, err, time.monotonic() - self.t0)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def run_args(models_file: Path, out: Path, models: str, *extra: str | Path) -> list[str | Path]:
    """`harness run` over two built-in talks with short outputs and no bandwidth probe."""
    return [
        "run",
        "--models-file",
        models_file,
        "--models",
        models,
        "--talks",
        "alibaba-qwen,qualcomm-npu",
        "--max-new-tokens",
        "8",
        "--no-bandwidth",
        "--out",
        out,
        *extra,
    ]
