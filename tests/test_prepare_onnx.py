"""`harness prepare onnx`: naming, checks, and a real build from the tiny-qwen2 GGUF run on CPU.

The build tests need the build extras (CI: pip install -e '.[onnx-build]'); the naming and check
tests need nothing beyond the core install.
"""

from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path

import pytest
import yaml

from harness.cli import main
from harness.errors import HarnessError
from harness.prepare import onnx_model_id

TINY_ENTRY = """\
- id: tiny-qwen2
  backend: llama_cpp
  quant: F32
  n_ctx: 2048
  prompt_style: chat
  source: {kind: generate, generator: tiny-qwen2, filename: tiny-qwen2.gguf}
- id: tiny-qwen2-q4_1
  backend: llama_cpp
  quant: Q4_1
  n_ctx: 2048
  prompt_style: chat
  source: {kind: generate, generator: tiny-qwen2-q4_1, filename: tiny-qwen2-q4_1.gguf}
"""


def write_tiny_qwen2_q4_1(path: Path) -> None:
    """tiny-qwen2 with its matmul weights stored as Q4_1, like the GGUFs people download."""
    import gguf
    import numpy as np

    from harness.models.generators import write_tiny_qwen2

    plain_add_tensor = gguf.GGUFWriter.add_tensor

    def add_tensor(self: gguf.GGUFWriter, name: str, tensor: np.ndarray, **kw: object) -> None:
        if tensor.ndim == 2 and name != "token_embd.weight":
            q = gguf.quants.quantize(tensor, gguf.GGMLQuantizationType.Q4_1)
            plain_add_tensor(self, name, q, raw_shape=q.shape, raw_dtype=gguf.GGMLQuantizationType.Q4_1)
        else:
            plain_add_tensor(self, name, tensor, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(gguf.GGUFWriter, "add_tensor", add_tensor)
        mp.setattr(
            gguf.GGUFWriter,
            "add_file_type",
            lambda self, _: self.add_uint32("general.file_type", 3),  # MOSTLY_Q4_1
        )
        write_tiny_qwen2(path)


# --- naming rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "quant", "precision", "expected"),
    [
        ("smollm2-135m-instruct-q4_1", "Q4_1", "int8", "smollm2-135m-instruct-onnx-int8"),
        ("gemma-3-270m-q4_k_m", "Q4_K_M", "int4", "gemma-3-270m-onnx-int4"),
        ("qwen3-0.6b-q8_0", None, "fp32", "qwen3-0.6b-onnx-fp32"),  # suffix recognised without quant
        ("tiny-qwen2", "F32", "int4", "tiny-qwen2-onnx-int4"),  # no suffix to strip
        ("Qwen/Qwen2.5-0.5B-Instruct", None, "int4", "qwen2.5-0.5b-instruct-onnx-int4"),
    ],
)
def test_onnx_model_id(base: str, quant: str | None, precision: str, expected: str) -> None:
    assert onnx_model_id(base, precision, quant) == expected


# --- checks that need no build dependencies -----------------------------------------------------------


def test_precision_provider_combination_is_checked() -> None:
    from harness.prepare.onnx import check_combo

    check_combo("int4", "cpu")
    with pytest.raises(HarnessError, match="does not build fp16 for cpu"):
        check_combo("fp16", "cpu")
    with pytest.raises(HarnessError, match=r"docs/onnx\.md"):
        check_combo("int4", "qnn")


def test_missing_build_dependency_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.prepare import onnx as prep

    real = prep.importlib.util.find_spec
    monkeypatch.setattr(prep.importlib.util, "find_spec", lambda name: None if name == "torch" else real(name))
    with pytest.raises(HarnessError) as err:
        prep.check_build_deps()
    message = str(err.value)
    assert "torch" in message and "pip install -e '.[onnx-build]'" in message and "\n" not in message


def test_builder_options() -> None:
    from harness.prepare.onnx import builder_options

    assert "prune_lm_head=true" in builder_options("int4", [])
    assert "shared_embeddings=false" in builder_options("int8", [])
    assert builder_options("int4", ["block_size=64"])[-1] == "block_size=64"  # the user's come last
    with pytest.raises(HarnessError, match="KEY=VALUE"):
        builder_options("int4", ["block_size"])


def test_double_quantisation_rule() -> None:
    from harness.prepare.onnx import source_is_quantised

    assert source_is_quantised(3, "Q4_1") is True  # MOSTLY_Q4_1
    assert source_is_quantised(0, "Q4_1") is False  # the file says ALL_F32, whatever the entry claims
    assert source_is_quantised(None, "Q8_0") is True and source_is_quantised(None, "F16") is False


def test_nested_rope_config_is_flattened_for_gemma3_only() -> None:
    from harness.prepare.builder_main import adapt_config

    def config(arch: str) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            architectures=[arch],
            rope_parameters={
                "full_attention": {"rope_type": "default", "rope_theta": 1_000_000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10_000.0},
            },
        )

    gemma = config("Gemma3ForCausalLM")
    assert adapt_config(gemma) == ["rope_theta", "rope_local_base_freq", "rope_parameters"]
    assert gemma.rope_theta == 1_000_000.0 and gemma.rope_local_base_freq == 10_000.0
    assert gemma.rope_parameters == {"rope_type": "default", "rope_theta": 1_000_000.0}
    other = config("Gemma4UnifiedForConditionalGeneration")  # its builder reads the nested form
    assert adapt_config(other) == [] and "full_attention" in other.rope_parameters


def test_unknown_model_id_suggests_and_names_both_kinds(write_models) -> None:
    from harness.prepare.onnx import PrepareRequest, prepare_onnx

    models = write_models(TINY_ENTRY)
    with pytest.raises(HarnessError) as err:
        prepare_onnx(PrepareRequest("tiny-qwen", "int4", models_file=models), echo=lambda _: None)
    assert 'Did you mean "tiny-qwen2"' in str(err.value) and "owner/name" in str(err.value)


def test_hub_id_with_offline_is_refused(write_models) -> None:
    from harness.prepare.onnx import PrepareRequest, prepare_onnx

    models = write_models(TINY_ENTRY)
    with pytest.raises(HarnessError, match="drop --offline"):
        prepare_onnx(PrepareRequest("Qwen/Qwen2.5-0.5B-Instruct", "int4", offline=True, models_file=models))


# --- real builds --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`harness prepare onnx tiny-qwen2-q4_1 --precision int4 --offline` into its own cache, once."""
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("prepare")
    models = root / "models.yaml"
    models.write_text("models:\n" + "".join("  " + line + "\n" for line in TINY_ENTRY.splitlines()), "utf-8")
    cache = root / "cache"
    from harness.models.generators import GENERATORS

    with pytest.MonkeyPatch.context() as mp:
        # Own cache: registered.yaml must not leak into other tests' model lists.
        mp.setenv("HARNESS_CACHE", str(cache))
        mp.setitem(GENERATORS, "tiny-qwen2-q4_1", write_tiny_qwen2_q4_1)
        rc = main(["prepare", "onnx", "tiny-qwen2-q4_1", "--precision", "int4", "--offline",
                   "--models-file", str(models)])  # fmt: skip
    return {"rc": rc, "cache": cache, "models": models}


@pytest.fixture
def in_cache(built: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setenv("HARNESS_CACHE", str(built["cache"]))
    return built


@pytest.mark.onnx
def test_prepare_registers_the_model(in_cache: dict) -> None:
    from harness.models.registry import load_models

    assert in_cache["rc"] == 0
    entries = load_models(in_cache["models"])
    entry = entries["tiny-qwen2-onnx-int4"]
    assert entry.backend == "onnx" and entry.quant == "INT4" and entry.prompt_style == "chat"
    assert entry.n_ctx == 2048  # the GGUF entry's
    folder = Path(entry.source.path)
    assert folder == in_cache["cache"] / "tiny-qwen2-onnx-int4"
    assert (folder / "genai_config.json").is_file() and (folder / "model.onnx").is_file()
    assert not list(in_cache["cache"].glob(".prepare-*"))  # the work folder is gone
    registered = yaml.safe_load((in_cache["cache"] / "registered.yaml").read_text(encoding="utf-8"))
    assert [m["id"] for m in registered["models"]] == ["tiny-qwen2-onnx-int4"]


@pytest.mark.onnx
def test_provenance_names_the_source_and_the_double_quantisation(in_cache: dict) -> None:
    from harness.models.registry import load_models

    entry = load_models(in_cache["models"])["tiny-qwen2-onnx-int4"]
    gguf = in_cache["cache"] / "tiny-qwen2-q4_1" / "tiny-qwen2-q4_1.gguf"
    prov = entry.provenance
    assert prov["source_model"] == "tiny-qwen2-q4_1"
    assert prov["source_file"] == "tiny-qwen2-q4_1.gguf"
    assert prov["source_sha256"] == hashlib.sha256(gguf.read_bytes()).hexdigest()
    assert prov["source_file_type"] == "MOSTLY_Q4_1"
    assert prov["precision"] == "int4" and prov["builder_version"]
    assert prov["double_quantised"] is True  # int4 built from Q4_1 weights quantises them twice
    on_disk = json.loads((Path(entry.source.path) / "harness.json").read_text(encoding="utf-8"))
    assert on_disk["provenance"] == prov
    assert on_disk["add_bos_token"] is False  # from the GGUF's tokenizer.ggml.add_bos_token


@pytest.mark.onnx
def test_rebuilding_needs_force(in_cache: dict) -> None:
    from harness.prepare.onnx import PrepareRequest, prepare_onnx

    with pytest.raises(HarnessError, match="--force"):
        prepare_onnx(PrepareRequest("tiny-qwen2-q4_1", "int4", offline=True, models_file=in_cache["models"]))


@pytest.mark.onnx
@pytest.mark.parametrize("provider", ["cpu", "auto"])
def test_the_onnx_backend_runs_the_prepared_model(in_cache: dict, provider: str) -> None:
    from harness.backends import backend_class
    from harness.backends.base import BackendOptions, GenerationRequest
    from harness.backends.onnx_genai import available_providers, select_provider
    from harness.models.registry import load_models
    from harness.prompts import load_template

    entry = load_models(in_cache["models"])["tiny-qwen2-onnx-int4"]
    backend = backend_class(entry.backend)(
        Path(entry.source.path), BackendOptions(threads=1, n_ctx=entry.n_ctx, provider=provider), entry.prompt_style
    )
    info = backend.load()
    assert info.provider == select_provider(provider, available_providers()).ep
    ids = backend.tokenize_prompt(load_template("zh", "chat").render("端侧大模型的推理速度很快。"))
    result = backend.generate(GenerationRequest(ids, max_new_tokens=5, min_new_tokens=5))
    assert len(result.token_ids) == len(result.token_ns) == 5
    assert sorted(result.token_ns) == result.token_ns and result.start_ns <= result.token_ns[0]


@pytest.mark.onnx
def test_the_prepared_model_refuses_an_unavailable_provider(in_cache: dict) -> None:
    from harness.backends.base import BackendOptions
    from harness.backends.onnx_genai import OnnxGenaiBackend, available_providers
    from harness.models.registry import load_models

    if "QNNExecutionProvider" in available_providers():
        pytest.skip("this machine has QNN")
    entry = load_models(in_cache["models"])["tiny-qwen2-onnx-int4"]
    backend = OnnxGenaiBackend(Path(entry.source.path), BackendOptions(threads=1, n_ctx=512, provider="qnn"), "chat")
    with pytest.raises(HarnessError) as err:
        backend.load()
    assert "available: " in str(err.value) and "CPUExecutionProvider" in str(err.value)


@pytest.mark.onnx
def test_builder_failure_is_one_line_with_the_log(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime_genai")
    pytest.importorskip("torch")
    from harness.prepare.onnx import BuildInputs, run_builder

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"architectures": ["NoSuchForCausalLM"], "model_type": "nosuch"}))
    log = tmp_path / "build.log"
    with pytest.raises(HarnessError) as err:
        run_builder(BuildInputs(input_dir=hf), tmp_path / "out", "fp32", "cpu", tmp_path / "c", [], log)
    assert "\n" not in str(err.value) and str(log) in str(err.value)
    assert log.read_text(encoding="utf-8").strip()
