"""The llama.cpp backend against the generated tiny-qwen2 GGUF: clean state per sample, counters, limits."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_cpp")

from harness.backends.base import BackendOptions, GenerationRequest
from harness.backends.llama_cpp import LlamaCppBackend, decode_utf8
from harness.models.generators import write_tiny_qwen2, write_tiny_qwen2_256k, write_tiny_qwen2_eos_first
from harness.prompts import load_template
from harness.trackers.latency import LatencyStats
from harness.trackers.memory import read_hwm_bytes, reset_hwm


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


@pytest.fixture(scope="module")
def eos_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaCppBackend]:
    path = tmp_path_factory.mktemp("tiny") / "tiny-qwen2-eos-first.gguf"
    write_tiny_qwen2_eos_first(path)
    b = LlamaCppBackend(path, BackendOptions(threads=1, n_ctx=1024), "chat")
    b.load()
    yield b
    b.close()


def test_min_new_tokens_bans_end_of_generation_tokens(eos_backend: LlamaCppBackend) -> None:
    import llama_cpp

    llm = eos_backend.llm
    assert llm is not None
    vocab = llm._model.vocab
    ids = eos_backend.tokenize_prompt(load_template("zh", "chat").render("你好"))
    natural = eos_backend.generate(GenerationRequest(ids, max_new_tokens=12))
    assert natural.token_ids == [] and natural.stop_reason == "eos"  # this model's greedy pick is always EOS

    forced = eos_backend.generate(GenerationRequest(ids, max_new_tokens=12, min_new_tokens=12))
    assert len(forced.token_ids) == 12 and forced.stop_reason == "length"
    assert not any(llama_cpp.llama_vocab_is_eog(vocab, t) for t in forced.token_ids)
    assert forced.counters is not None and forced.counters.decode_tokens == 11

    # Banned only until the minimum: the 6th step picks EOS again, which ends generation and is not kept.
    partial = eos_backend.generate(GenerationRequest(ids, max_new_tokens=12, min_new_tokens=5))
    assert len(partial.token_ids) == 5 and partial.stop_reason == "eos"
    assert not any(llama_cpp.llama_vocab_is_eog(vocab, t) for t in partial.token_ids)
    assert partial.end_ns is not None and partial.end_ns > partial.token_ns[-1]


def test_an_eos_first_token_keeps_its_ttft(eos_backend: LlamaCppBackend) -> None:
    ids = eos_backend.tokenize_prompt(load_template("en", "chat").render("text"))
    result = eos_backend.generate(GenerationRequest(ids, max_new_tokens=8))
    assert result.token_ids == [] and result.end_ns is not None and result.end_ns > result.start_ns
    assert result.counters is not None and result.counters.decode_tokens == 0  # llama.cpp itself says 1
    stats = LatencyStats.from_generation(len(ids), result)
    assert stats.output_tokens == 0 and stats.ttft_s is not None and stats.ttft_s > 0
    assert stats.e2e_s == stats.ttft_s and stats.prefill_tok_s is not None


def test_generated_text_drops_a_character_cut_by_max_new_tokens() -> None:
    data = "摘要：高通".encode()
    assert decode_utf8(data) == "摘要：高通"
    assert decode_utf8(data[:-1]) == "摘要：高"  # the last character's third byte was never generated
    assert decode_utf8(b"\xff" + data) == "\ufffd摘要：高通"  # invalid bytes elsewhere stay visible


def test_peak_rss_stays_flat_over_repeats_with_a_large_vocabulary(tmp_path: Path) -> None:
    # llama.cpp's sampler chain keeps an n_vocab x 12-byte buffer (3 MiB at 262k tokens). One left behind per
    # generation -- llama-cpp-python's sampler is freed only by Python's cyclic GC -- raised Gemma's peak RSS
    # by ~3 MiB per sample. The kernel's high-water mark, reset before each generation, must not move.
    pid = os.getpid()
    if not reset_hwm(pid) or read_hwm_bytes(pid) is None:
        pytest.skip("needs Linux /proc/PID/clear_refs and VmHWM")
    path = tmp_path / "tiny-qwen2-256k.gguf"
    write_tiny_qwen2_256k(path)
    backend = LlamaCppBackend(path, BackendOptions(threads=1, n_ctx=512), "chat")
    backend.load()
    try:
        ids = backend.tokenize_prompt(load_template("en", "chat").render("The talk was about small models. " * 8))
        request = GenerationRequest(ids, max_new_tokens=8, min_new_tokens=8)
        backend.generate(request)  # warm-up, as the harness does: first-use allocations happen here
        peaks = []
        for _ in range(10):
            reset_hwm(pid)
            backend.generate(request)
            hwm = read_hwm_bytes(pid)
            assert hwm is not None
            peaks.append(hwm)
    finally:
        backend.close()
    assert (max(peaks) - min(peaks)) / 2**20 < 0.5, [round(p / 2**20, 2) for p in peaks]


def test_greedy_decoder_matches_llama_cpps_logit_bias_and_greedy_chain(eos_backend: LlamaCppBackend) -> None:
    # llama.cpp's own way (--ignore-eos): a sampler chain of logit_bias(-inf on every EOG token) + greedy.
    import math

    import llama_cpp

    llm, decoder = eos_backend.llm, eos_backend._decoder
    assert llm is not None and decoder is not None and decoder.eog
    ctx = llm._ctx.ctx

    def chain(banned: list[int]) -> object:
        c = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        if banned:
            biases = (llama_cpp.llama_logit_bias * len(banned))()
            for slot, token in zip(biases, banned, strict=True):
                slot.token, slot.bias = token, -math.inf
            llama_cpp.llama_sampler_chain_add(
                c, llama_cpp.llama_sampler_init_logit_bias(llm.n_vocab(), len(banned), biases)
            )
        llama_cpp.llama_sampler_chain_add(c, llama_cpp.llama_sampler_init_greedy())
        return c

    plain, banning = chain([]), chain(sorted(decoder.eog))
    try:
        ids = eos_backend.tokenize_prompt(load_template("zh", "chat").render("你好"))
        llm.reset()
        llm._ctx.kv_cache_clear()
        prompt = (llama_cpp.llama_token * len(ids))(*ids)
        assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(prompt, len(ids))) == 0
        one = (llama_cpp.llama_token * 1)()
        for _ in range(8):
            assert decoder.next_token(ctx) == llama_cpp.llama_sampler_sample(plain, ctx, -1)
            token = decoder.next_token(ctx, ban_eog=True)
            assert token == llama_cpp.llama_sampler_sample(banning, ctx, -1)
            assert token not in decoder.eog
            one[0] = token
            assert llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(one, 1)) == 0
    finally:
        llama_cpp.llama_sampler_free(plain)
        llama_cpp.llama_sampler_free(banning)


def test_a_persistent_threadpool_with_llama_bench_settings_is_attached(tmp_path: Path) -> None:
    path = tmp_path / "tiny-qwen2.gguf"
    write_tiny_qwen2(path)
    backend = LlamaCppBackend(path, BackendOptions(threads=2, n_ctx=2048), "chat")
    info = backend.load()
    try:
        assert info.extra["threadpool"] == "attached", info.extra.get("threadpool_error")
        assert info.extra["threadpool_n_threads"] == 2 and info.extra["threadpool_poll"] == 50
        assert info.extra["threadpool_prio"] == 0 and isinstance(info.extra["openmp"], bool)
        ids = backend.tokenize_prompt(load_template("en", "chat").render("text " * 150))
        assert backend.llm is not None and len(ids) > backend.llm.n_batch  # prefill in two batches
        result = backend.generate(GenerationRequest(ids, max_new_tokens=6, min_new_tokens=6))
        assert len(result.token_ids) == 6 and result.prompt_tokens_evaluated == len(ids)
    finally:
        backend.close()
    assert backend._threadpool is None and backend.llm is None


def test_gpu_layers_on_a_cpu_only_build_are_refused_up_front(tmp_path: Path) -> None:
    import subprocess
    import sys

    import llama_cpp

    if llama_cpp.llama_supports_gpu_offload():
        pytest.skip("this llama-cpp-python build offloads to a GPU: n_gpu_layers is valid here")
    command = [sys.executable, "-m", "harness", "run", "--models", "tiny-qwen2", "--n-gpu-layers", "1"]
    proc = subprocess.run([*command, "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "no GPU offload" in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())  # refused before any run directory
