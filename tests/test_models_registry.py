"""models.yaml schema errors, --models lookup, and the machine-local registered.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.models.registry import (
    HfSource,
    ModelEntry,
    OnnxSource,
    PathSource,
    default_models_file,
    load_models,
    register_model,
    registered_models_file,
    select_models,
)


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("HARNESS_CACHE", str(root))
    return root


def entry_dict(model_id: str = "m1", **overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "id": model_id,
        "backend": "llama_cpp",
        "quant": "Q4_0",
        "n_ctx": 2048,
        "prompt_style": "chat",
        "source": {"kind": "generate", "generator": "tiny-qwen2", "filename": "m.gguf"},
    }
    entry.update(overrides)
    return entry


def write_models(path: Path, *entries: dict[str, object]) -> Path:
    path.write_text(yaml.safe_dump({"models": list(entries)}, allow_unicode=True), encoding="utf-8")
    return path


def test_shipped_models_file_validates() -> None:
    entries = load_models(default_models_file(), include_registered=False)
    assert any(e.default for e in entries.values())
    assert isinstance(entries["qwen3-0.6b-q8_0"].source, HfSource)


def test_unknown_key_names_entry_and_key(tmp_path: Path) -> None:
    path = write_models(tmp_path / "models.yaml", entry_dict("good"), entry_dict("bad-one", n_threads=4))
    with pytest.raises(HarnessError) as err:
        load_models(path)
    assert 'model "bad-one"' in str(err.value) and 'unknown key "n_threads"' in str(err.value)


def test_unknown_source_key_names_entry_and_key(tmp_path: Path) -> None:
    source = {"kind": "hf", "repo": "a/b", "filename": "x.gguf", "branch": "main"}
    path = write_models(tmp_path / "models.yaml", entry_dict("hub-model", source=source))
    with pytest.raises(HarnessError) as err:
        load_models(path)
    assert 'model "hub-model"' in str(err.value) and 'unknown key "branch"' in str(err.value)


def test_unknown_backend_names_entry_and_choices(tmp_path: Path) -> None:
    path = write_models(tmp_path / "models.yaml", entry_dict("fast", backend="vllm"))
    with pytest.raises(HarnessError) as err:
        load_models(path)
    message = str(err.value)
    assert 'model "fast"' in message and "'vllm'" in message and "llama_cpp, onnx" in message


def test_models_typo_suggests_closest_id(tmp_path: Path) -> None:
    entries = load_models(
        write_models(tmp_path / "models.yaml", entry_dict("qwen2.5-0.5b"), entry_dict("gemma"))
    )
    with pytest.raises(HarnessError, match=r'Did you mean "qwen2\.5-0\.5b"\?'):
        select_models(entries, ["qwen2.5-05b"])
    assert [e.id for e in select_models(entries, ["gemma", "qwen2.5-0.5b"])] == ["gemma", "qwen2.5-0.5b"]


def test_relative_paths_are_relative_to_the_declaring_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    path = write_models(
        conf / "models.yaml",
        entry_dict("local", source={"kind": "path", "path": "weights/m.gguf"}),
        entry_dict("ox", backend="onnx", source={"kind": "onnx_dir", "path": "../onnx/m"}),
        entry_dict("abs", source={"kind": "path", "path": str(tmp_path / "abs.gguf")}),
    )
    monkeypatch.chdir(tmp_path)  # somewhere else than conf/
    entries = load_models(path)
    local, ox, absolute = entries["local"].source, entries["ox"].source, entries["abs"].source
    assert isinstance(local, PathSource) and Path(local.path) == (conf / "weights" / "m.gguf").resolve()
    assert isinstance(ox, OnnxSource) and Path(ox.path) == (tmp_path / "onnx" / "m").resolve()
    assert isinstance(absolute, PathSource) and absolute.path == str(tmp_path / "abs.gguf")


# --- registered.yaml -----------------------------------------------------------------------------


def onnx_entry(model_id: str, path: str = "onnx/qwen") -> ModelEntry:
    return ModelEntry.model_validate(
        entry_dict(
            model_id,
            backend="onnx",
            quant="int4",
            source={"kind": "onnx_dir", "path": path},
            provenance={"built_by": "harness prepare onnx", "note": "中文说明"},
        )
    )


def test_register_model_adds_then_replaces(cache: Path, tmp_path: Path) -> None:
    models = write_models(tmp_path / "models.yaml", entry_dict("shipped"))
    assert registered_models_file() == cache / "registered.yaml"

    register_model(onnx_entry("qwen-onnx"), models_file=models)
    register_model(onnx_entry("other-onnx"), models_file=models)
    register_model(onnx_entry("qwen-onnx", path="onnx/qwen-v2"), models_file=models)

    entries = load_models(models)
    assert list(entries) == ["shipped", "other-onnx", "qwen-onnx"]
    source = entries["qwen-onnx"].source
    # Relative to the registrations file (the cache), not to models.yaml or the working directory.
    assert isinstance(source, OnnxSource) and Path(source.path) == (cache / "onnx" / "qwen-v2").resolve()
    assert entries["qwen-onnx"].provenance["note"] == "中文说明"
    assert "中文说明" in registered_models_file().read_text(encoding="utf-8")  # readable, not escaped
    assert list(load_models(models, include_registered=False)) == ["shipped"]


def test_register_model_refuses_a_shipped_id(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models.yaml", entry_dict("taken"))
    with pytest.raises(HarnessError, match=r'"taken" is already in'):
        register_model(onnx_entry("taken"), models_file=models)
    assert not registered_models_file().exists()


def test_id_in_both_files_is_an_error(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models.yaml", entry_dict("dup"))
    registered_models_file().parent.mkdir(parents=True)
    write_models(registered_models_file(), entry_dict("dup"))
    with pytest.raises(HarnessError) as err:
        load_models(models)
    assert '"dup"' in str(err.value) and str(registered_models_file()) in str(err.value)


def test_invalid_registered_file_is_reported_with_its_path(tmp_path: Path) -> None:
    models = write_models(tmp_path / "models.yaml", entry_dict("ok"))
    registered_models_file().parent.mkdir(parents=True)
    write_models(registered_models_file(), entry_dict("broken", backend="tensorrt"))
    with pytest.raises(HarnessError, match=str(registered_models_file())):
        load_models(models)


def test_backend_names_match_the_backend_registry() -> None:
    from harness.backends import BACKENDS
    from harness.models.registry import BACKEND_NAMES

    assert set(BACKEND_NAMES) == set(BACKENDS)
