"""The GGUF header reader on hostile bytes (issue 21): it is parsed in the parent before any worker starts, so
whatever the file holds it must end in the harness's own error (`GgufHeaderError`, a HarnessError), never a
MemoryError, RecursionError, struct.error or a hang. Crafted cases for each bound, then hypothesis over
mutated and random headers for a bounded time (deadline and example count below)."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import HarnessError
from harness.models.gguf_header import MAX_DEPTH, GgufHeaderError, parse_gguf_header, read_gguf_header

STRING, ARRAY, UINT32 = 8, 9, 4


def _str(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def header(kv: list[bytes], tensors: tuple[bytes, ...] | list[bytes] = ()) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + b"".join(tensors)


def kv_u32(key: str, value: int) -> bytes:
    return _str(key) + struct.pack("<II", UINT32, value)


def tensor(name: str, shape: tuple[int, ...], ttype: int) -> bytes:
    return (
        _str(name)
        + struct.pack("<I", len(shape))
        + b"".join(struct.pack("<Q", d) for d in shape)
        + struct.pack("<IQ", ttype, 0)
    )


VALID = header(
    [_str("general.architecture") + struct.pack("<I", STRING) + _str("llama"), kv_u32("llama.block_count", 2)],
    [tensor("token_embd.weight", (8, 4), 0)],
)


def test_a_valid_header_reads() -> None:
    h = parse_gguf_header(VALID)
    assert h.arch_key("block_count") == 2
    assert h.tensors[0].n_bytes == 8 * 4 * 4


def nested(depth: int) -> bytes:
    """An array of arrays `depth` deep (the 50 000-deep case of the issue, in a few bytes each)."""
    body = struct.pack("<IQ", ARRAY, 1) * depth + struct.pack("<IQ", UINT32, 0)
    return _str("x") + struct.pack("<I", ARRAY) + body


CRAFTED = {
    "unknown tensor type": header([], [tensor("w", (4,), 999)]),
    "block_count 2^40": header(
        [
            _str("general.architecture") + struct.pack("<I", STRING) + _str("llama"),
            _str("llama.block_count") + struct.pack("<IQ", 10, 2**40),
        ]
    ),
    "50 000 nested arrays": header([nested(50_000)]),
    "metadata count 2^60": b"GGUF" + struct.pack("<IQQ", 3, 0, 2**60),
    "tensor count 2^60": b"GGUF" + struct.pack("<IQQ", 3, 2**60, 0),
    "string length 2^63": b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**63),
    "array length 2^62": header([_str("a") + struct.pack("<IIQ", ARRAY, UINT32, 2**62)]),
    "string array of 2^40": header([_str("v") + struct.pack("<IIQ", ARRAY, STRING, 2**40)]),
    "unknown value type": header([_str("k") + struct.pack("<I", 77)]),
    "truncated": VALID[:-5],
    "9 dimensions": header([], [tensor("w", (1,) * 9, 0)]),
    "version 7": b"GGUF" + struct.pack("<IQQ", 7, 0, 0),
    "not gguf": b"GGML" + b"\0" * 40,
}


@pytest.mark.parametrize("data", list(CRAFTED.values()), ids=list(CRAFTED))
def test_each_bound_is_a_harness_error(data: bytes) -> None:
    with pytest.raises(GgufHeaderError) as info:
        parse_gguf_header(data, "crafted.gguf")
    assert isinstance(info.value, HarnessError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_arrays_nested_to_the_limit_still_read() -> None:
    assert parse_gguf_header(header([nested(MAX_DEPTH - 1)])).metadata["x"] is not None


def test_files_that_are_no_gguf(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.write_bytes(b"")
    for path in (empty, Path("/dev/zero")):
        with pytest.raises(GgufHeaderError):
            read_gguf_header(path)


def _check(data: bytes) -> None:
    with contextlib.suppress(HarnessError):  # the only error it may raise
        parse_gguf_header(data, "fuzz.gguf")


# Bounded for CI: each example is microseconds; 300 examples x 2 properties take about a second here.
FUZZ = settings(max_examples=300, deadline=1000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_after_the_magic(tail: bytes) -> None:
    _check(b"GGUF" + struct.pack("<I", 3) + tail)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8))
def test_mutated_valid_headers(flips: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for pos, value in flips:
        data[pos] = value
    _check(bytes(data))
