"""The header of a GGUF file (metadata and tensor infos) without its vocabulary's cost.

`gguf.GGUFReader` builds a numpy view per array element, so opening a model with a 262k-token vocabulary
(Gemma 3) takes seconds, for metadata the harness only needs a few numbers of (layer and head counts for
the KV-cache size, tensor sizes for the bytes a decode step reads). This reader walks the header with
`struct.unpack_from` over a memory map and skips arrays of strings by their lengths; value types and
quantisation block sizes come from the `gguf` package. Arrays of numbers are returned as lists, arrays of
strings as their length only (`StringArray`).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

_SCALARS: dict[int, str] = {
    gguf.GGUFValueType.UINT8: "B",
    gguf.GGUFValueType.INT8: "b",
    gguf.GGUFValueType.UINT16: "H",
    gguf.GGUFValueType.INT16: "h",
    gguf.GGUFValueType.UINT32: "I",
    gguf.GGUFValueType.INT32: "i",
    gguf.GGUFValueType.FLOAT32: "f",
    gguf.GGUFValueType.BOOL: "?",
    gguf.GGUFValueType.UINT64: "Q",
    gguf.GGUFValueType.INT64: "q",
    gguf.GGUFValueType.FLOAT64: "d",
}


@dataclass(frozen=True)
class StringArray:
    """An array of strings (a vocabulary, merges) left unread: only its length."""

    length: int


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # GGML order: ne[0] (the contiguous dimension) first
    type: int  # gguf.GGMLQuantizationType value

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def n_bytes(self) -> int:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(self.type)]
        return self.n_elements // block * type_size


@dataclass(frozen=True)
class GgufHeader:
    metadata: dict[str, Any]
    tensors: list[TensorInfo]

    def arch_key(self, name: str, default: Any = None) -> Any:
        """`{general.architecture}.{name}`, e.g. arch_key("block_count")."""
        return self.metadata.get(f"{self.metadata.get('general.architecture')}.{name}", default)


class _Cursor:
    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.pos = 0

    def unpack(self, fmt: str) -> Any:
        value = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        n = self.unpack("Q")
        text = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == gguf.GGUFValueType.STRING:
            return self.string()
        if vtype == gguf.GGUFValueType.ARRAY:
            item_type, count = self.unpack("I"), self.unpack("Q")
            if item_type == gguf.GGUFValueType.STRING:
                for _ in range(count):  # skip: length-prefixed, no other way past them
                    self.pos += 8 + struct.unpack_from("<Q", self.buf, self.pos)[0]
                return StringArray(count)
            if item_type in _SCALARS:
                fmt = f"<{count}{_SCALARS[item_type]}"
                items = list(struct.unpack_from(fmt, self.buf, self.pos))
                self.pos += struct.calcsize(fmt)
                return items
            return [self.value(item_type) for _ in range(count)]  # arrays of arrays: rare
        raise ValueError(f"unknown GGUF value type {vtype}")


def read_gguf_header(path: Path) -> GgufHeader:
    """Metadata and tensor infos of a little-endian GGUF (v2/v3). Raises ValueError on anything else."""
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        cur = _Cursor(buf)
        cur.pos = 4
        version = cur.unpack("I")
        if version not in (2, 3):
            raise ValueError(f"{path}: GGUF version {version} (or big-endian) is not supported")
        n_tensors, n_kv = cur.unpack("Q"), cur.unpack("Q")
        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key = cur.string()
            metadata[key] = cur.value(cur.unpack("I"))
        tensors = []
        for _ in range(n_tensors):
            name = cur.string()
            n_dims = cur.unpack("I")
            shape = tuple(cur.unpack("Q") for _ in range(n_dims))
            ttype = cur.unpack("I")
            cur.unpack("Q")  # data offset
            tensors.append(TensorInfo(name=name, shape=shape, type=ttype))
    return GgufHeader(metadata=metadata, tensors=tensors)
