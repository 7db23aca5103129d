"""The header of a GGUF file (metadata and tensor infos) without its vocabulary's cost.

`gguf.GGUFReader` builds a numpy view per array element, so opening a model with a 262k-token vocabulary
(Gemma 3) takes seconds, for metadata the harness only needs a few numbers of (layer and head counts for
the KV-cache size, tensor sizes for the bytes a decode step reads). This reader walks the header with
`struct.unpack_from` over a memory map and skips arrays of strings by their lengths; value types and
quantisation block sizes come from the `gguf` package. Arrays of numbers are returned as lists, arrays of
strings as their length only (`StringArray`).

The file is untrusted input parsed in the parent before any worker starts, so the reader is bounded: every
count and length must fit in the bytes left in the file, arrays nest at most `MAX_DEPTH` deep, tensors have at
most `MAX_DIMS` dimensions of a known GGML type, and layer counts are at most `MAX_LAYERS`. Anything else is a
`GgufHeaderError` -- a `HarnessError` (one line, naming the file) that is also a `ValueError`, so callers that
treat an unreadable header as "unknown" keep doing so.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf

from harness.errors import HarnessError

MAX_DEPTH = 4  # arrays of arrays: GGUF files in the wild nest at most 2 deep
MAX_DIMS = 8  # GGML tensors have at most 4
MAX_LAYERS = 65536  # block_count: real models have under 200; a larger one would size per-layer lists
MAX_KEY_BYTES = 65536


class GgufHeaderError(HarnessError, ValueError):
    """The GGUF header is malformed or out of bounds."""

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
    def __init__(self, buf: mmap.mmap | bytes, where: str) -> None:
        self.buf = buf
        self.pos = 0
        self.where = where

    def fail(self, problem: str) -> GgufHeaderError:
        return GgufHeaderError(f"{self.where}: malformed GGUF header ({problem}); re-download or rebuild the file")

    @property
    def left(self) -> int:
        return len(self.buf) - self.pos

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if size > self.left:
            raise self.fail(f"truncated at byte {self.pos}")
        value = struct.unpack_from("<" + fmt, self.buf, self.pos)[0]
        self.pos += size
        return value

    def count(self, what: str, item_bytes: int) -> int:
        """A uint64 count of items of at least `item_bytes` each: it must fit in what is left of the file."""
        n = self.unpack("Q")
        if n * item_bytes > self.left:
            raise self.fail(f"{what} {n} does not fit in the {self.left} bytes left")
        return int(n)

    def string(self, limit: int | None = None) -> str:
        n = self.count("string length", 1)
        if limit is not None and n > limit:
            raise self.fail(f"a key of {n} bytes")
        text = bytes(self.buf[self.pos : self.pos + n]).decode("utf-8", errors="replace")
        self.pos += n
        return text

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == gguf.GGUFValueType.STRING:
            return self.string()
        if vtype == gguf.GGUFValueType.ARRAY:
            if depth >= MAX_DEPTH:
                raise self.fail(f"arrays nested more than {MAX_DEPTH} deep")
            item_type = self.unpack("I")
            if item_type == gguf.GGUFValueType.STRING:
                count = self.count("string array length", 8)
                for _ in range(count):  # skip: length-prefixed, no other way past them
                    n = self.count("string length", 1)  # read first: it moves pos past the length
                    self.pos += n
                return StringArray(count)
            if item_type in _SCALARS:
                width = struct.calcsize("<" + _SCALARS[item_type])
                count = self.count("array length", width)
                fmt = f"<{count}{_SCALARS[item_type]}"
                items = list(struct.unpack_from(fmt, self.buf, self.pos))
                self.pos += struct.calcsize(fmt)
                return items
            if item_type != gguf.GGUFValueType.ARRAY:
                raise self.fail(f"unknown GGUF value type {item_type}")
            count = self.count("array length", 12)  # each nested array has at least its type and count
            return [self.value(item_type, depth + 1) for _ in range(count)]  # arrays of arrays: rare
        raise self.fail(f"unknown GGUF value type {vtype}")


_KNOWN_TYPES = frozenset(int(t) for t in gguf.GGML_QUANT_SIZES)


def read_gguf_header(path: Path) -> GgufHeader:
    """Metadata and tensor infos of a little-endian GGUF (v2/v3). Raises GgufHeaderError (a ValueError and a
    HarnessError) on anything else, OSError when the file cannot be read."""
    with path.open("rb") as f:
        if not path.is_file() or f.seek(0, 2) == 0:  # mmap refuses empty files; a device is no model file
            raise GgufHeaderError(f"{path} is not a GGUF file (empty, or not a regular file)")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            return parse_gguf_header(buf, str(path))


def parse_gguf_header(buf: mmap.mmap | bytes, where: str = "GGUF") -> GgufHeader:
    """The header in `buf` (a memory map or bytes), bounded as the module docstring says."""
    if buf[:4] != b"GGUF":
        raise GgufHeaderError(f"{where} is not a GGUF file")
    cur = _Cursor(buf, where)
    cur.pos = 4
    version = cur.unpack("I")
    if version not in (2, 3):
        raise GgufHeaderError(f"{where}: GGUF version {version} (or big-endian) is not supported")
    n_tensors = cur.unpack("Q")
    n_kv = cur.count("metadata count", 12)  # a key has at least its length (8) and value type (4)
    if n_tensors * 24 > cur.left:  # name length, n_dims, type, offset
        raise cur.fail(f"tensor count {n_tensors} does not fit in the file")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string(limit=MAX_KEY_BYTES)
        metadata[key] = cur.value(cur.unpack("I"))
    tensors = []
    for _ in range(n_tensors):
        name = cur.string(limit=MAX_KEY_BYTES)
        n_dims = cur.unpack("I")
        if n_dims > MAX_DIMS:
            raise cur.fail(f"tensor {name!r} has {n_dims} dimensions")
        shape = tuple(cur.unpack("Q") for _ in range(n_dims))
        ttype = cur.unpack("I")
        if ttype not in _KNOWN_TYPES:
            raise cur.fail(f"tensor {name!r} has unknown type {ttype} (a newer gguf package may know it)")
        cur.unpack("Q")  # data offset
        tensors.append(TensorInfo(name=name, shape=shape, type=ttype))
    header = GgufHeader(metadata=metadata, tensors=tensors)
    layers = header.arch_key("block_count")
    if isinstance(layers, int) and not 0 <= layers <= MAX_LAYERS:
        raise cur.fail(f"block_count {layers} (at most {MAX_LAYERS})")
    return header
