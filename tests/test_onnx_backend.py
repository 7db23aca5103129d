"""The onnx backend (onnxruntime-genai) on a tiny ONNX model built from the tiny-qwen2 GGUF.

Provider resolution is tested on its own (pure function of the available-provider list); everything
that runs a model needs the build extras too (torch, transformers) to make the model once per module.
CI: pip install -e '.[onnx-build]' (the runtime-only extra `.[onnx]` runs the provider tests alone).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime_genai")

from harness.backends import backend_class
from harness.backends.base import BackendOptions, GenerationRequest
from harness.backends.onnx_genai import (
    AUTO_ORDER,
    PROVIDERS,
    OnnxGenaiBackend,
    available_providers,
    model_target_provider,
    select_provider,
)
from harness.errors import HarnessError
from harness.prompts import load_template

pytestmark = pytest.mark.onnx

CPU = "CPUExecutionProvider"


# --- provider resolution (no model needed) --------------------------------------------------------


def test_registry_maps_onnx_to_this_backend() -> None:
    assert backend_class("onnx") is OnnxGenaiBackend


def test_cpu_is_always_available_here() -> None:
    assert CPU in available_providers()


def test_auto_prefers_npu_then_gpu_then_cpu() -> None:
    assert select_provider("auto", [CPU]).name == "cpu"
    assert select_provider("auto", ["CUDAExecutionProvider", CPU]).name == "cuda"
    assert select_provider("auto", ["CUDAExecutionProvider", "QNNExecutionProvider", CPU]).name == "qnn"
    assert AUTO_ORDER[-1] == "cpu" and set(AUTO_ORDER) == set(PROVIDERS)


def test_auto_prefers_the_provider_the_model_was_built_for() -> None:
    available = ["QNNExecutionProvider", "DmlExecutionProvider", CPU]
    assert select_provider("auto", available, model_target="dml").name == "dml"
    # ...but only when that provider is present.
    assert select_provider("auto", [CPU], model_target="cuda").name == "cpu"


def test_named_provider_that_is_missing_lists_the_available_ones() -> None:
    with pytest.raises(HarnessError) as err:
        select_provider("qnn", ["AzureExecutionProvider", CPU])
    message = str(err.value)
    assert "\n" not in message
    assert "QNNExecutionProvider" in message
    assert f"available: AzureExecutionProvider, {CPU}" in message


def test_named_provider_is_case_insensitive() -> None:
    assert select_provider("CUDA", ["CUDAExecutionProvider", CPU]).ep == "CUDAExecutionProvider"


def test_unknown_provider_suggests_the_closest_name() -> None:
    with pytest.raises(HarnessError, match='Did you mean "openvino"'):
        select_provider("openvno", [CPU])


def test_model_target_is_read_from_genai_config(tmp_path: Path) -> None:
    config = {"model": {"decoder": {"session_options": {"provider_options": [{"cuda": {"enable_cuda_graph": "0"}}]}}}}
    (tmp_path / "genai_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert model_target_provider(tmp_path) == "cuda"
    config["model"]["decoder"]["session_options"]["provider_options"] = []
    (tmp_path / "genai_config.json").write_text(json.dumps(config), encoding="utf-8")
    assert model_target_provider(tmp_path) is None


def test_load_refuses_a_folder_without_genai_config(tmp_path: Path) -> None:
    backend = OnnxGenaiBackend(tmp_path, BackendOptions(threads=1, n_ctx=256), "chat")
    with pytest.raises(HarnessError, match="prepare onnx"):
        backend.load()


# --- a real (tiny) model ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny-qwen2 GGUF -> float32 HF folder -> int4 onnxruntime-genai model (built once per module)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from harness.models.generators import write_tiny_qwen2
    from harness.prepare.onnx import BuildInputs, builder_options, gguf_to_hf, run_builder

    root = tmp_path_factory.mktemp("tiny-onnx")
    gguf = root / "tiny-qwen2.gguf"
    write_tiny_qwen2(gguf)
    gguf_to_hf(gguf, root / "hf")
    out = root / "model"
    run_builder(
        BuildInputs(input_dir=root / "hf"),
        out,
        "int4",
        "cpu",
        root / "cache",
        builder_options("int4", []),
        root / "build.log",
    )
    # As `harness prepare onnx` records it from the GGUF: qwen2 GGUFs do not prepend BOS.
    (out / "harness.json").write_text(json.dumps({"add_bos_token": False}), encoding="utf-8")
    return out


def variant(src: Path, dest: Path, *, harness_json: dict | None = None, genai_patch: dict | None = None) -> Path:
    """A copy of the model folder with harness.json replaced and/or genai_config.json keys changed."""
    shutil.copytree(src, dest)
    if harness_json is not None:
        (dest / "harness.json").write_text(json.dumps(harness_json), encoding="utf-8")
    if genai_patch is not None:
        config = json.loads((dest / "genai_config.json").read_text(encoding="utf-8"))
        config["model"].update(genai_patch)
        (dest / "genai_config.json").write_text(json.dumps(config), encoding="utf-8")
    return dest


def loaded(
    path: Path, *, style: str = "chat", provider: str = "cpu", threads: int = 1, n_ctx: int = 1024, **options: object
) -> OnnxGenaiBackend:
    backend = OnnxGenaiBackend(
        path,
        BackendOptions(threads=threads, n_ctx=n_ctx, provider=provider, **options),
        style,  # type: ignore[arg-type]
    )
    backend.load()
    return backend


TALK = "今天我们讨论小模型在手机上的速度。"


def prompt_ids(backend: OnnxGenaiBackend, lang: str = "zh", text: str = TALK) -> list[int]:
    return backend.tokenize_prompt(load_template(lang, backend.prompt_style).render(text))


def test_load_reports_the_provider_that_runs(tiny_onnx: Path) -> None:
    backend = OnnxGenaiBackend(tiny_onnx, BackendOptions(threads=2, n_ctx=4096, provider="cpu"), "chat")
    info = backend.load()
    assert info.provider == CPU
    assert info.extra["intra_op_num_threads"] == 2
    assert info.n_ctx == 4096  # below the model's context_length, so the option wins
    assert tiny_onnx / "model.onnx" in info.model_files
    backend.close()


def test_n_ctx_is_capped_at_the_models_context_length(tiny_onnx: Path) -> None:
    context_length = json.loads((tiny_onnx / "genai_config.json").read_text())["model"]["context_length"]
    backend = loaded(tiny_onnx, n_ctx=context_length * 2)
    assert backend.n_ctx == context_length


def test_auto_runs_on_what_select_provider_picks(tiny_onnx: Path) -> None:
    backend = OnnxGenaiBackend(tiny_onnx, BackendOptions(threads=1, n_ctx=512, provider="auto"), "chat")
    info = backend.load()
    assert info.provider == select_provider("auto", available_providers()).ep


def test_unavailable_provider_is_an_error_not_a_cpu_run(tiny_onnx: Path) -> None:
    if "QNNExecutionProvider" in available_providers():
        pytest.skip("this machine has QNN")
    backend = OnnxGenaiBackend(tiny_onnx, BackendOptions(threads=1, n_ctx=512, provider="qnn"), "chat")
    with pytest.raises(HarnessError) as err:
        backend.load()
    assert CPU in str(err.value) and "\n" not in str(err.value)
    assert backend.model is None


def test_provider_options_on_cpu_are_refused(tiny_onnx: Path) -> None:
    backend = OnnxGenaiBackend(
        tiny_onnx, BackendOptions(threads=1, n_ctx=512, provider="cpu", provider_options={"x": "1"}), "chat"
    )
    with pytest.raises(HarnessError, match="provider_options"):
        backend.load()


def test_chat_prompt_goes_through_the_models_template(tiny_onnx: Path) -> None:
    backend = loaded(tiny_onnx)
    ids = prompt_ids(backend, text="你好，世界。Hello")
    start, end = (backend.tokenizer.to_token_id(t) for t in ("<|im_start|>", "<|im_end|>"))
    # ChatML: <|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n, control tokens as single ids.
    assert ids[0] == start
    assert ids.count(start) == 2 and ids.count(end) == 1
    content = load_template("zh", "chat").render("你好，世界。Hello").content
    assert backend.codec.decode(ids) == f"user\n{content}\nassistant\n"  # decode drops control tokens


def test_chat_style_without_a_template_is_an_error(tiny_onnx: Path, tmp_path: Path) -> None:
    model = variant(tiny_onnx, tmp_path / "m")
    (model / "chat_template.jinja").unlink()
    backend = loaded(model)
    with pytest.raises(HarnessError, match="prompt_style: completion"):
        prompt_ids(backend)


def test_completion_prompt_is_raw_text(tiny_onnx: Path) -> None:
    backend = loaded(tiny_onnx, style="completion")
    ids = prompt_ids(backend, "en")
    rendered = load_template("en", "completion").render(TALK).content
    assert backend.codec.decode(ids) == rendered


def test_bos_is_prepended_when_the_model_config_asks_for_it(tiny_onnx: Path, tmp_path: Path) -> None:
    bos = json.loads((tiny_onnx / "genai_config.json").read_text())["model"]["bos_token_id"]
    without = prompt_ids(loaded(tiny_onnx, style="completion"))
    assert without[0] != bos
    model = variant(tiny_onnx, tmp_path / "m", harness_json={"add_bos_token": True})
    with_bos = prompt_ids(loaded(model, style="completion"))
    assert with_bos == [bos, *without]


def test_generation_timestamps_and_counts(tiny_onnx: Path) -> None:
    backend = loaded(tiny_onnx, threads=2)
    ids = prompt_ids(backend)
    # min = max forces exactly max_new_tokens whatever the random weights prefer.
    result = backend.generate(GenerationRequest(ids, max_new_tokens=12, min_new_tokens=12))
    assert len(result.token_ids) == len(result.token_ns) == 12
    assert result.stop_reason == "length"
    assert result.start_ns <= result.token_ns[0]
    assert all(a <= b for a, b in zip(result.token_ns, result.token_ns[1:], strict=False))
    assert result.prompt_tokens_evaluated == len(ids)
    assert result.counters is None
    # Text is the decode of all ids at once (never a sum of per-token pieces).
    assert result.text == backend.codec.decode(result.token_ids)


def test_each_generation_starts_from_a_clean_state(tiny_onnx: Path) -> None:
    backend = loaded(tiny_onnx)
    ids = prompt_ids(backend)
    first = backend.generate(GenerationRequest(ids, max_new_tokens=8, min_new_tokens=8))
    second = backend.generate(GenerationRequest(ids, max_new_tokens=8, min_new_tokens=8))
    assert first.token_ids == second.token_ids  # greedy + no KV carried over
    assert second.prompt_tokens_evaluated == len(ids)


def test_eos_stops_and_min_new_tokens_holds_it_back(tiny_onnx: Path, tmp_path: Path) -> None:
    backend = loaded(tiny_onnx)
    ids = prompt_ids(backend)
    greedy = backend.generate(GenerationRequest(ids, max_new_tokens=6)).token_ids
    assert greedy, "the tiny model should not stop at once"
    # Make the token the model emits first its end-of-sequence token.
    model = variant(tiny_onnx, tmp_path / "m", genai_patch={"eos_token_id": greedy[0]})
    eos_backend = loaded(model)
    stopped = eos_backend.generate(GenerationRequest(ids, max_new_tokens=6))
    assert stopped.stop_reason == "eos"
    assert stopped.token_ids == [] and stopped.token_ns == []
    held = eos_backend.generate(GenerationRequest(ids, max_new_tokens=6, min_new_tokens=4))
    assert len(held.token_ids) >= 4
    assert greedy[0] not in held.token_ids[:4]


def test_prompt_plus_max_new_tokens_beyond_n_ctx_is_an_error(tiny_onnx: Path) -> None:
    backend = loaded(tiny_onnx, n_ctx=64)
    with pytest.raises(HarnessError, match="exceeds n_ctx 64"):
        backend.generate(GenerationRequest(list(range(60)), max_new_tokens=8))


def test_token_ids_come_from_tokenizer_json_when_tokenizers_is_installed(tiny_onnx: Path) -> None:
    tokenizers = pytest.importorskip("tokenizers")
    backend = loaded(tiny_onnx, style="completion")
    assert backend.codec is not None and backend.codec.name.startswith("tokenizers")
    reference = tokenizers.Tokenizer.from_file(str(tiny_onnx / "tokenizer.json"))
    text = load_template("zh", "completion").render(TALK).content
    assert prompt_ids(backend) == reference.encode(text, add_special_tokens=False).ids


def test_without_tokenizers_the_genai_tokenizer_is_used(tiny_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.backends.onnx_genai as module

    real = module.importlib.util.find_spec
    monkeypatch.setattr(module.importlib.util, "find_spec", lambda n: None if n == "tokenizers" else real(n))
    backend = OnnxGenaiBackend(tiny_onnx, BackendOptions(threads=1, n_ctx=512), "chat")
    info = backend.load()
    assert info.extra["tokenizer"] == "onnxruntime-genai"
    ids = prompt_ids(backend)
    assert ids == [
        int(i) for i in backend.tokenizer.encode(backend._chat_text(load_template("zh", "chat").render(TALK)))
    ]


def test_sliding_window_models_get_a_kv_cache_of_at_least_one_window(tiny_onnx: Path, tmp_path: Path) -> None:
    decoder = json.loads((tiny_onnx / "genai_config.json").read_text())["model"]["decoder"]
    decoder["sliding_window"] = {"window_size": 96, "slide_key_value_cache": False, "layers": [0]}
    assert OnnxGenaiBackend._kv_floor({"decoder": decoder}) == 96
    assert OnnxGenaiBackend._kv_floor({"decoder": {}}) == 0
