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
