"""The tiny random-weight qwen2 GGUF: well-formed, deterministic, and usable by llama.cpp in Chinese
and English (tokenise round trip, ChatML template, greedy generation)."""

from __future__ import annotations

import ctypes
from pathlib import Path

import gguf
import numpy as np
import pytest

from harness.models.generators import (
    CHATML_TEMPLATE,
    SPECIAL_TOKENS,
    bytes_to_unicode,
    train_bpe,
    write_tiny_qwen2,
)
from harness.models.sources import file_sha256

CHINESE = "你好，世界"
MESSAGES = [
    {"role": "system", "content": "你是一个有帮助的助手。"},
    {"role": "user", "content": "请用一句话总结：今天的演讲讨论了小模型。"},
]
EXPECTED_CHATML = (
    "<|im_start|>system\n你是一个有帮助的助手。<|im_end|>\n"
    "<|im_start|>user\n请用一句话总结：今天的演讲讨论了小模型。<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny") / "tiny-qwen2.gguf"
    write_tiny_qwen2(path)
    return path


def _field(reader: gguf.GGUFReader, key: str) -> object:
    return reader.fields[key].contents()


def test_is_deterministic_and_small(model_path: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.gguf"
    write_tiny_qwen2(again)
    assert file_sha256(again) == file_sha256(model_path)
    assert model_path.stat().st_size < 1_000_000


def test_metadata_describes_a_qwen2_chat_model(model_path: Path) -> None:
    reader = gguf.GGUFReader(model_path)
    assert _field(reader, "general.architecture") == "qwen2"
    assert _field(reader, "qwen2.block_count") == 2
    assert _field(reader, "qwen2.embedding_length") == 64
    assert _field(reader, "qwen2.attention.head_count") == 4
    assert _field(reader, "qwen2.attention.head_count_kv") == 2
    assert _field(reader, "qwen2.feed_forward_length") == 128
    assert _field(reader, "qwen2.context_length") == 32768
    assert _field(reader, "tokenizer.ggml.model") == "gpt2"
    assert _field(reader, "tokenizer.ggml.pre") == "qwen2"
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False

    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    assert isinstance(tokens, list) and isinstance(types, list)
    for special in SPECIAL_TOKENS:
        assert types[tokens.index(special)] == gguf.TokenType.CONTROL
    assert tokens[_field(reader, "tokenizer.ggml.eos_token_id")] == "<|im_end|>"
    assert tokens[_field(reader, "tokenizer.ggml.bos_token_id")] == "<|endoftext|>"
    assert tokens[_field(reader, "tokenizer.ggml.padding_token_id")] == "<|endoftext|>"
    assert _field(reader, "tokenizer.chat_template") == CHATML_TEMPLATE

    embd = next(t for t in reader.tensors if t.name == "token_embd.weight")
    assert embd.tensor_type == gguf.GGMLQuantizationType.F32
    assert list(embd.shape) == [64, len(tokens)]  # GGML order: (n_embd, n_vocab)
    assert all(np.isfinite(t.data).all() for t in reader.tensors)


def test_bpe_vocab_is_byte_level_and_merges_are_closed() -> None:
    vocab, merges = train_bpe("你好，你们好。你好！hello world, hello talk. " * 3, 40)
    assert vocab[:256] == [bytes_to_unicode()[b] for b in range(256)]
    assert len(set(vocab)) == len(vocab)
    known = set(vocab)
    for merge in merges:  # every merge joins two known tokens into a known token
        left, right = merge.split(" ")
        assert left in known and right in known and left + right in known
    # Chinese characters (3 UTF-8 bytes each) become single tokens when frequent enough.
    b2u = bytes_to_unicode()
    assert "".join(b2u[b] for b in "你".encode()) in known


# --- in llama.cpp --------------------------------------------------------------------------------

llama_cpp = pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def llm(model_path: Path):  # type: ignore[no-untyped-def]
    model = llama_cpp.Llama(model_path=str(model_path), n_ctx=256, n_threads=1, seed=0, verbose=False)
    yield model
    model.close()


def test_llama_cpp_round_trips_chinese_and_english(llm) -> None:  # type: ignore[no-untyped-def]
    for text in (CHINESE, "Hello, world! 今天的演讲很有意思。"):
        ids = llm.tokenize(text.encode(), add_bos=True, special=False)
        assert ids, text
        assert llm.token_bos() not in ids  # Qwen2 never prepends BOS
        assert llm.detokenize(ids).decode("utf-8") == text
    # Frequent Chinese characters are single tokens, not three byte tokens.
    assert len(llm.tokenize(CHINESE.encode(), add_bos=False)) < len(CHINESE.encode())


def test_llama_cpp_sees_chatml_control_tokens(llm) -> None:  # type: ignore[no-untyped-def]
    assert llm.tokenize(b"<|im_end|>", add_bos=False, special=True) == [llm.token_eos()]
    im_start = llm.tokenize(b"<|im_start|>", add_bos=False, special=True)
    assert len(im_start) == 1
    # As plain text (special=False) the same characters are ordinary bytes.
    assert len(llm.tokenize(b"<|im_start|>", add_bos=False, special=False)) > 1


def test_llama_cpp_renders_the_chat_template(llm) -> None:  # type: ignore[no-untyped-def]
    template = llama_cpp.llama_model_chat_template(llm.model, None)
    assert template == CHATML_TEMPLATE.encode()

    # llama.cpp's own (C++) renderer ...
    messages = (llama_cpp.llama_chat_message * len(MESSAGES))()
    keep = []  # the C structs hold pointers; keep the bytes alive
    for slot, message in zip(messages, MESSAGES, strict=True):
        role, content = message["role"].encode(), message["content"].encode()
        keep += [role, content]
        slot.role, slot.content = role, content
    buf = ctypes.create_string_buffer(4096)
    n = llama_cpp.llama_chat_apply_template(template, messages, len(MESSAGES), True, buf, len(buf))
    assert buf.raw[:n].decode("utf-8") == EXPECTED_CHATML

    # ... and llama-cpp-python's Jinja renderer of the embedded template agree.
    formatter = llama_cpp.llama_chat_format.Jinja2ChatFormatter(
        template=CHATML_TEMPLATE, eos_token="<|im_end|>", bos_token="<|endoftext|>"
    )
    assert formatter(messages=MESSAGES).prompt == EXPECTED_CHATML


def test_llama_cpp_generates_from_a_chinese_prompt(llm) -> None:  # type: ignore[no-untyped-def]
    prompt = llm.tokenize(EXPECTED_CHATML.encode(), add_bos=False, special=True)

    def greedy(n: int) -> list[int]:
        llm.reset()
        out = []
        for token in llm.generate(prompt, top_k=1, temp=0.0, reset=True):
            out.append(token)
            if len(out) == n:
                break
        return out

    first = greedy(8)
    assert len(first) == 8
    assert all(0 <= t < llm.n_vocab() for t in first)
    # The last decode's logits (llama.cpp's own buffer; llm.scores is only filled with logits_all=True).
    logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),))
    assert np.isfinite(logits).all()
    assert greedy(8) == first  # fixed weights + greedy decoding = same tokens
