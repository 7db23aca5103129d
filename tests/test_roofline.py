"""Roofline inputs: the GGUF header reader, KV-cache bytes at a depth (sliding windows included), weight bytes
a decode step reads, the multi-threaded bandwidth probe."""

from __future__ import annotations

import math
from pathlib import Path

import gguf
import numpy as np
import pytest

from harness.models import generators
from harness.models.generators import write_tiny_qwen2, write_tiny_qwen2_eos_first
from harness.models.gguf_header import StringArray, read_gguf_header
from harness.trackers.device import (
    KvCacheShape,
    kv_bytes_per_token,
    kv_cache_shape,
    memory_bandwidth_gbs,
    roofline_util,
    weights_read_bytes,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roofline") / "tiny-qwen2.gguf"
    write_tiny_qwen2(path)
    return path


def _header_only(path: Path, arch: str, kv: dict[str, object]) -> Path:
    writer = gguf.GGUFWriter(path, arch)
    for key, value in kv.items():
        if isinstance(value, list):
            writer.add_array(f"{arch}.{key}", value)
        elif isinstance(value, bool):
            writer.add_bool(f"{arch}.{key}", value)
        else:
            writer.add_uint32(f"{arch}.{key}", int(value))  # type: ignore[call-overload]
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_header_reader_agrees_with_gguf_reader(tiny: Path) -> None:
    header = read_gguf_header(tiny)
    reader = gguf.GGUFReader(tiny)
    for key, field in reader.fields.items():
        if key.startswith("GGUF."):
            continue
        expected = field.contents()
        got = header.metadata[key]
        if isinstance(got, StringArray):
            assert isinstance(expected, list) and got.length == len(expected)
        elif isinstance(expected, float):
            assert got == pytest.approx(expected)
        else:
            assert got == expected, key
    assert [(t.name, list(t.shape), t.n_bytes) for t in header.tensors] == [
        (t.name, [int(d) for d in t.shape], int(t.n_bytes)) for t in reader.tensors
    ]


def test_kv_bytes_from_the_model_dimensions(tiny: Path) -> None:
    head_dim = generators.HIDDEN // generators.N_HEADS
    per_layer = generators.N_KV_HEADS * head_dim * 2 * 2  # K and V, f16
    shape = kv_cache_shape(tiny)
    assert shape is not None and shape.layer_bytes == (per_layer,) * generators.N_LAYERS
    assert kv_bytes_per_token(tiny) == per_layer * generators.N_LAYERS
    assert kv_bytes_per_token(tiny, bytes_per_element=1.0) == per_layer * generators.N_LAYERS // 2  # q8-ish cache
    assert shape.read_bytes(1000) == 1000 * shape.bytes_per_token
    # Decode steps of 201 output tokens after a 1000-token prompt run at depths 1001..1200: mean 1100.5.
    assert shape.mean_read_bytes(1000, 201) == pytest.approx(1100.5 * shape.bytes_per_token)


def test_sliding_window_layers_read_at_most_their_window(tmp_path: Path) -> None:
    # gemma3's default period: every 6th layer is full attention, the others use the window.
    path = _header_only(
        tmp_path / "g3.gguf",
        "gemma3",
        {
            "block_count": 12,
            "embedding_length": 640,
            "attention.head_count": 4,
            "attention.head_count_kv": 1,
            "attention.key_length": 256,
            "attention.value_length": 256,
            "attention.sliding_window": 512,
        },
    )
    shape = kv_cache_shape(path)
    assert shape is not None
    full = [il for il, w in enumerate(shape.layer_window) if w is None]
    assert full == [5, 11]
    per_layer = 1 * (256 + 256) * 2
    assert shape.read_bytes(100) == 12 * 100 * per_layer
    assert shape.read_bytes(2000) == (2 * 2000 + 10 * 512) * per_layer

    # An explicit per-layer pattern in the file wins over the architecture's default period.
    path = _header_only(
        tmp_path / "g3p.gguf",
        "gemma3",
        {
            "block_count": 4,
            "embedding_length": 640,
            "attention.head_count": 4,
            "attention.head_count_kv": [1, 1, 2, 2],
            "attention.key_length": 256,
            "attention.value_length": 256,
            "attention.sliding_window": 512,
            "attention.sliding_window_pattern": [True, False, True, False],
        },
    )
    shape = kv_cache_shape(path)
    assert shape is not None
    assert shape.layer_window == (512, None, 512, None)
    assert shape.layer_bytes == (1024, 1024, 2048, 2048)


def test_no_attention_dimensions_means_unknown(tmp_path: Path) -> None:
    assert kv_cache_shape(_header_only(tmp_path / "m.gguf", "mamba", {"block_count": 4})) is None
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    assert kv_bytes_per_token(bad) is None and weights_read_bytes(bad) is None


def test_decode_reads_one_embedding_row_unless_the_head_is_tied(tiny: Path, tmp_path: Path) -> None:
    tied = read_gguf_header(tiny)
    assert weights_read_bytes(tiny) == sum(t.n_bytes for t in tied.tensors)  # tied head: the table is read whole

    untied_path = tmp_path / "eos.gguf"
    write_tiny_qwen2_eos_first(untied_path)  # has its own output.weight
    untied = read_gguf_header(untied_path)
    embd = next(t for t in untied.tensors if t.name == "token_embd.weight")
    row = embd.n_bytes // embd.shape[1]
    assert weights_read_bytes(untied_path) == sum(t.n_bytes for t in untied.tensors) - embd.n_bytes + row


def test_roofline_counts_weights_and_kv() -> None:
    # 100 tok/s x (90 MB weights + 10 MB KV) = 10 GB/s of 20 GB/s
    assert roofline_util(100.0, 90e6, 10e6, 20.0) == pytest.approx(0.5)
    assert roofline_util(100.0, 90e6, None, 20.0) == pytest.approx(0.45)
    assert roofline_util(None, 90e6, 10e6, 20.0) is None and roofline_util(100.0, 90e6, 10e6, None) is None
    shape = KvCacheShape(layer_bytes=(10, 20), layer_window=(None, 4))
    assert shape.read_bytes(3) == 10 * 3 + 20 * 3 and shape.read_bytes(10) == 10 * 10 + 20 * 4


@pytest.mark.parametrize("threads", [1, 3])
def test_bandwidth_probe_runs_in_the_given_threads(threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    seen: set[str] = set()
    real_copyto = np.copyto

    def copyto(dst: np.ndarray, src: np.ndarray) -> None:
        seen.add(threading.current_thread().name)
        real_copyto(dst, src)

    monkeypatch.setattr(np, "copyto", copyto)
    gbs = memory_bandwidth_gbs(threads, size_mb=8, repeats=2)
    assert math.isfinite(gbs) and gbs > 0
    workers = {name for name in seen if name.startswith("bandwidth")}
    assert len(workers) == (threads if threads > 1 else 0)
