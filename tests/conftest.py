"""Shared fixtures. Every test gets its own model cache (HARNESS_CACHE) so nothing touches ~/.cache."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    # One cache per test session: tiny-qwen2 is generated once and reused across tests.
    cache = tmp_path_factory.getbasetemp() / "model-cache"
    cache.mkdir(exist_ok=True)
    monkeypatch.setenv("HARNESS_CACHE", str(cache))
    return cache


@pytest.fixture
def write_models(tmp_path: Path):
    """Write a models.yaml from a YAML snippet (the `models:` list body) and return its path."""

    def _write(body: str, name: str = "models.yaml") -> Path:
        path = tmp_path / name
        path.write_text("models:\n" + textwrap.indent(textwrap.dedent(body), "  "), encoding="utf-8")
        return path

    return _write


@pytest.fixture
def dummy_model_file(tmp_path: Path) -> Path:
    path = tmp_path / "dummy.bin"
    path.write_bytes(b"\0" * 1024)
    return path


@pytest.fixture
def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def small_tmpfs(tmp_path: Path):
    """A real 64 KiB file system (tmpfs) for disk-full tests; skipped where mounting is not allowed."""
    import subprocess

    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    try:
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount_point)], capture_output=True, text=True
        )
        why = proc.stderr.strip() if proc.returncode else ""
    except OSError as exc:  # no mount(8) on this system
        why = str(exc)
    if why:
        pytest.skip(f"cannot mount a tmpfs here (needs root/CAP_SYS_ADMIN): {why}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


# Files a test keeps for people to look at (screenshots): listed at the end of the run, so a CI log
# says where they are.
ARTIFACTS: list[str] = []


@pytest.fixture
def artifacts() -> list[str]:
    """Append a line naming a kept file; it is printed at the end of the run."""
    return ARTIFACTS


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in ARTIFACTS:
        terminalreporter.write_line(f"artifact: {line}")
