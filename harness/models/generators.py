"""Models written locally instead of downloaded (source kind `generate` in models.yaml).

`tiny-qwen2` is a random-weight, 2-layer `qwen2` GGUF of a few hundred KB with a real byte-level BPE
tokenizer and Qwen's ChatML template. Its output is noise, but it exercises everything the harness
does with a real Qwen model -- load, chat template, Chinese and English tokenisation, streaming
decode -- in well under a second, with no network. Tests and smoke runs use it.

`tiny-qwen2-256k` is the same model with its vocabulary padded to 262,144 tokens (Gemma 3's size) by
unused filler tokens. Per-generation buffers sized by the vocabulary (llama.cpp's sampler keeps
n_vocab x 12 bytes) then weigh megabytes, so a leak of one per sample shows in peak RSS, as it does with
Gemma -- at a few hundred milliseconds of generation instead of a real model's seconds.

A generator is `(path) -> None` writing one complete model file at `path`; the caller handles the
cache, partial files and atomic renames.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from itertools import pairwise
from pathlib import Path

import numpy as np

Generator = Callable[[Path], None]

# ChatML, as Qwen2/2.5 instruct models ship it (without Qwen's default system prompt, so a prompt
# renders the same whether or not the caller supplies a system message).
CHATML_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")

# Text the tiny tokenizer's merges are learnt from: English and Chinese, so both languages get
# multi-byte tokens (a Chinese character is three UTF-8 bytes and needs two merges to be one token).
_BPE_SAMPLE = """
The talk was about how small language models run on phones and laptops. The speaker said that the
model should summarise the talk in a few sentences, and that the summary should keep the main points.
We measured the time to the first token, the decode speed and the memory of each model on the device.
这个演讲讨论了小型语言模型如何在手机和电脑上运行。演讲者说，模型应该用几句话总结演讲的内容，
并且总结应该保留主要的观点。我们在设备上测量了每个模型的首个词元时间、解码速度和内存。
你好，世界。今天我们来谈谈人工智能、数据和时间。中国的科学家和工程师正在研究大语言模型。
"""
_N_MERGES = 320

# Shapes: small enough to write in milliseconds, but with grouped-query attention (4 query heads
# sharing 2 KV heads) and an FFN wider than the model, as in real Qwen2 checkpoints.
N_LAYERS = 2
HIDDEN = 64
N_HEADS = 4
N_KV_HEADS = 2
FFN = 128
CONTEXT_LENGTH = 32768
RMS_EPS = 1e-6
ROPE_THETA = 1_000_000.0
SEED = 20240607


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map, which byte-level BPE vocabularies are written in."""
    printable = list(range(ord("!"), ord("~") + 1))
    printable += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {b: chr(c) for b, c in zip(printable, chars, strict=True)}


def _pretokenize(text: str) -> list[str]:
    # A simplified version of the GPT-2/Qwen split: runs of letters (CJK included) with an optional
    # leading space, single digits, punctuation runs, whitespace. Merges only need to be plausible
    # pairs; llama.cpp applies its own (qwen2) pre-tokenizer when encoding.
    return re.findall(r" ?[^\W\d_]+| ?\d| ?[^\w\s]+|\s+", text)


def train_bpe(text: str, n_merges: int) -> tuple[list[str], list[str]]:
    """Learn byte-level BPE merges from `text`; returns (vocab, merges) in GGUF's string form.

    Deterministic: ties between equally frequent pairs go to the lexicographically smallest pair.
    """
    b2u = bytes_to_unicode()
    vocab = [b2u[b] for b in range(256)]
    known = set(vocab)
    words: Counter[tuple[str, ...]] = Counter(
        tuple(b2u[b] for b in word.encode("utf-8")) for word in _pretokenize(text)
    )
    merges: list[str] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for word, count in words.items():
            for pair in pairwise(word):
                pairs[pair] += count
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merged = best[0] + best[1]
        merges.append(f"{best[0]} {best[1]}")
        if merged not in known:  # two different pairs can spell the same token; keep vocab unique
            known.add(merged)
            vocab.append(merged)
        new_words: Counter[tuple[str, ...]] = Counter()
        for word, count in words.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_words[tuple(out)] += count
        words = new_words
    return vocab, merges


def write_tiny_qwen2(path: Path) -> None:
    """Write the tiny random-weight qwen2 GGUF (F32, deterministic) to `path`."""
    _write_qwen2(path, "tiny-qwen2 (random weights, for tests)", n_vocab_total=None)


def write_tiny_qwen2_256k(path: Path) -> None:
    """tiny-qwen2 with a 262,144-token vocabulary (fillers after the real tokens); embeddings in F16 so the
    file stays ~32 MiB. Deterministic."""
    _write_qwen2(path, "tiny-qwen2-256k (random weights, large vocabulary, for tests)", n_vocab_total=LARGE_VOCAB)


def write_tiny_qwen2_eos_first(path: Path) -> None:
    """tiny-qwen2 whose greedy choice is always EOS (<|im_end|>), for tests of end-of-sequence handling
    (the plain tiny model never samples it). Every token embedding carries +4 in hidden dimension 0, which
    the 2 small random layers barely move, and a separate output head reads dimension 0 only for EOS."""
    _write_qwen2(path, "tiny-qwen2-eos-first (random weights, always EOS, for tests)", None, eos_first=True)


def write_tiny_qwen2_q8_0(path: Path) -> None:
    """tiny-qwen2 with its 2-D weight matrices quantised to Q8_0 (token embeddings stay F32): the quantised
    kernels and weight repacking real models go through (llama.cpp's AMX and CPU_REPACK extra buffer types),
    in a 250 KB file. Deterministic."""
    _write_qwen2(path, "tiny-qwen2-q8_0 (random weights, Q8_0, for tests)", None, qtype="Q8_0")


def write_tiny_qwen2_q4_0(path: Path) -> None:
    """tiny-qwen2 with its 2-D weight matrices in Q4_0, the type every x86 repack path converts (q4_0x8)."""
    _write_qwen2(path, "tiny-qwen2-q4_0 (random weights, Q4_0, for tests)", None, qtype="Q4_0")


LARGE_VOCAB = 262_144
# gguf-py quantises these in numpy; the K-quants need 256-wide rows (the tiny model's are 64 or 128).
QUANT_FILE_TYPES = {"Q8_0": "MOSTLY_Q8_0", "Q4_0": "MOSTLY_Q4_0", "Q4_1": "MOSTLY_Q4_1", "Q5_0": "MOSTLY_Q5_0"}


def _write_qwen2(
    path: Path, name: str, n_vocab_total: int | None, eos_first: bool = False, qtype: str | None = None
) -> None:
    import gguf  # deferred: only needed when the model is generated
    from gguf.quants import quantize

    vocab, merges = train_bpe(_BPE_SAMPLE, _N_MERGES)
    tokens = vocab + list(SPECIAL_TOKENS)
    types = [gguf.TokenType.NORMAL] * len(vocab) + [gguf.TokenType.CONTROL] * len(SPECIAL_TOKENS)
    ids = {tok: len(vocab) + i for i, tok in enumerate(SPECIAL_TOKENS)}
    if n_vocab_total is not None:
        # Never produced by the BPE (no merge builds them), so tokenisation is unchanged.
        n_fill = n_vocab_total - len(tokens)
        tokens += [f"<|filler_{i}|>" for i in range(n_fill)]
        types += [gguf.TokenType.UNUSED] * n_fill
    n_vocab = len(tokens)
    embd_dtype = np.float32 if n_vocab_total is None else np.float16

    writer = gguf.GGUFWriter(path, "qwen2")
    writer.add_name(name)
    if qtype is not None:
        writer.add_file_type(getattr(gguf.LlamaFileType, QUANT_FILE_TYPES[qtype]))
    else:
        writer.add_file_type(gguf.LlamaFileType.ALL_F32 if n_vocab_total is None else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_context_length(CONTEXT_LENGTH)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(N_LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(N_HEADS)
    writer.add_head_count_kv(N_KV_HEADS)
    writer.add_rope_freq_base(ROPE_THETA)
    writer.add_layer_norm_rms_eps(RMS_EPS)

    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    # As Qwen2.5-Instruct GGUFs: BOS/padding are <|endoftext|> but never prepended; EOS is <|im_end|>.
    writer.add_bos_token_id(ids["<|endoftext|>"])
    writer.add_eos_token_id(ids["<|im_end|>"])
    writer.add_pad_token_id(ids["<|endoftext|>"])
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML_TEMPLATE)

    rng = np.random.default_rng(SEED)

    def weight(*shape: int) -> np.ndarray:
        # numpy shape is GGML's ne reversed: (out_features, in_features) for a matmul weight.
        return rng.normal(0.0, 0.08, size=shape).astype(np.float32)

    def matrix(name: str, data: np.ndarray) -> None:
        """A matmul weight: F32, or quantised to `qtype` (gguf-py infers the shape from the block bytes)."""
        if qtype is None:
            writer.add_tensor(name, data)
        else:
            ggml_type = getattr(gguf.GGMLQuantizationType, qtype)
            writer.add_tensor(name, quantize(data, ggml_type), raw_dtype=ggml_type)

    kv_dim = HIDDEN // N_HEADS * N_KV_HEADS
    # No output.weight: llama.cpp then ties the output head to token_embd, as Qwen2.5-0.5B does.
    embd = weight(n_vocab, HIDDEN).astype(embd_dtype)
    if eos_first:
        embd[:, 0] = 4.0
        head = weight(n_vocab, HIDDEN)
        head[:, 0] = 0.0
        head[ids["<|im_end|>"], 0] = 50.0
        writer.add_tensor("output.weight", head)
    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    for i in range(N_LAYERS):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        matrix(f"{blk}.attn_q.weight", weight(HIDDEN, HIDDEN))
        # qwen2 has QKV biases, and llama.cpp refuses a qwen2 file without them.
        writer.add_tensor(f"{blk}.attn_q.bias", weight(HIDDEN))
        matrix(f"{blk}.attn_k.weight", weight(kv_dim, HIDDEN))
        writer.add_tensor(f"{blk}.attn_k.bias", weight(kv_dim))
        matrix(f"{blk}.attn_v.weight", weight(kv_dim, HIDDEN))
        writer.add_tensor(f"{blk}.attn_v.bias", weight(kv_dim))
        matrix(f"{blk}.attn_output.weight", weight(HIDDEN, HIDDEN))
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        matrix(f"{blk}.ffn_gate.weight", weight(FFN, HIDDEN))
        matrix(f"{blk}.ffn_up.weight", weight(FFN, HIDDEN))
        matrix(f"{blk}.ffn_down.weight", weight(HIDDEN, FFN))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


# generator name (models.yaml `source.generator`) -> writer; unknown names get "did you mean" in sources.
GENERATORS: dict[str, Generator] = {
    "tiny-qwen2": write_tiny_qwen2,
    "tiny-qwen2-256k": write_tiny_qwen2_256k,
    "tiny-qwen2-q8_0": write_tiny_qwen2_q8_0,
    "tiny-qwen2-q4_0": write_tiny_qwen2_q4_0,
}
