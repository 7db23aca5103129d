"""The llama.cpp backend against the generated tiny-qwen2 GGUF: clean state per sample, counters, limits."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_cpp")

from harness.backends.base import BackendOptions, GenerationRequest
from harness.backends.llama_cpp import LlamaCppBackend, decode_utf8
from harness.models.generators import write_tiny_qwen2
from harness.prompts import load_template


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> LlamaCppBackend:
    path = tmp_path_factory.mktemp("tiny") / "tiny-qwen2.gguf"
    write_tiny_qwen2(path)
    b = LlamaCppBackend(path, BackendOptions(threads=1, n_ctx=1024), "chat")
    b.load()
    return b


def test_every_generation_prefills_the_whole_prompt(backend: LlamaCppBackend) -> None:
    ids = backend.tokenize_prompt(load_template("zh", "chat").render("通义千问开源了多个模型。" * 5))
    for _ in range(3):  # llama-cpp-python would reuse the cached prefix on the 2nd and 3rd call
        result = backend.generate(GenerationRequest(ids, max_new_tokens=4, min_new_tokens=4))
        assert result.prompt_tokens_evaluated == len(ids)
        assert result.counters is not None and result.counters.decode_tokens == 3  # last token is never fed back
        assert len(result.token_ids) == len(result.token_ns) == 4
        assert result.start_ns < result.token_ns[0] <= result.token_ns[-1]


def test_chat_prompt_uses_the_models_template(backend: LlamaCppBackend) -> None:
    ids = backend.tokenize_prompt(load_template("en", "chat").render("text"))
    llm = backend.llm
    assert llm is not None
    rendered = llm.detokenize(ids, special=True).decode()
    assert rendered.startswith("<|im_start|>user\n") and rendered.endswith("<|im_start|>assistant\n")


def test_min_new_tokens_ignores_eos(backend: LlamaCppBackend) -> None:
    ids = backend.tokenize_prompt(load_template("zh", "chat").render("你好"))
    result = backend.generate(GenerationRequest(ids, max_new_tokens=12, min_new_tokens=12))
    assert len(result.token_ids) == 12 and result.stop_reason == "length"


def test_generated_text_drops_a_character_cut_by_max_new_tokens() -> None:
    data = "摘要：高通".encode()
    assert decode_utf8(data) == "摘要：高通"
    assert decode_utf8(data[:-1]) == "摘要：高"  # the last character's third byte was never generated
    assert decode_utf8(b"\xff" + data) == "\ufffd摘要：高通"  # invalid bytes elsewhere stay visible
