"""Read a GGUF file's header fast: key/values (architecture, context length, chat template...)
and where each tensor's bytes are.

Hand-written on purpose: `gguf.GGUFReader` builds a Python object for every element of every
array, and Qwen2.5's 151k-token vocabulary and merges took it 11.8 s; this walks the same
header, skips arrays (their length only) and stops where the tensor data starts (~0.2 s).
Format: https://github.com/ggml-org/ggml/blob/master/docs/gguf.md
"""

from __future__ import annotations

import mmap
import struct
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

from hearth.errors import ModelNotFoundError

_SCALARS = {  # GGUF value type -> struct format
    0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d",
}  # fmt: skip
_STRING, _ARRAY = 8, 9


class _Cursor:
    def __init__(self, buf: Any, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, fmt: str) -> Any:
        size = struct.calcsize("<" + fmt)
        if self.pos + size > len(self.buf):
            raise ModelNotFoundError(f"{self.path}: GGUF header is cut short (truncated file?)")
        (value,) = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> str:
        n = self.take("Q")
        raw = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        return raw.decode("utf-8", "replace")

    def skip_string(self) -> None:
        length = self.take("Q")  # not `self.pos += self.take(...)`: that reads pos first
        self.pos += length

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.take(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.take("I"), self.take("Q")
            if item in _SCALARS:
                self.pos += struct.calcsize("<" + _SCALARS[item]) * count
            elif item == _STRING:
                for _ in range(count):
                    self.skip_string()
            else:
                raise ModelNotFoundError(f"{self.path}: nested GGUF arrays are not supported")
            return ArrayInfo(item, count)
        raise ModelNotFoundError(f"{self.path}: unknown GGUF value type {kind}")


class ArrayInfo(tuple):
    """What the reader keeps of an array: its element type and length."""

    def __new__(cls, item_type: int, count: int) -> ArrayInfo:
        return super().__new__(cls, (item_type, count))

    @property
    def count(self) -> int:
        return self[1]


class TensorInfo(NamedTuple):
    name: str
    dims: tuple[int, ...]  # GGUF order: the innermost (contiguous) dimension first
    ggml_type: int
    offset: int  # from the start of the file


class Header(NamedTuple):
    metadata: tuple[tuple[str, Any], ...]
    tensors: tuple[TensorInfo, ...]


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Every key/value of the GGUF header; arrays come back as ArrayInfo (type, length)."""
    return dict(read_header(path).metadata)


def read_header(path: str | Path) -> Header:
    """Key/values and tensor locations. Cached per file (path, size, modification time)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ModelNotFoundError(f"model file not found: {p}") from None
    return _read(str(p.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=16)
def _read(path: str, _size: int, _mtime: int) -> Header:
    p = Path(path)
    with p.open("rb") as f:
        try:
            buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # an empty file cannot be mapped
            raise ModelNotFoundError(f"{p} is not a GGUF file (it is empty)") from None
    with buf:
        cur = _Cursor(buf, p)
        if bytes(buf[:4]) != b"GGUF":
            raise ModelNotFoundError(f"{p} is not a GGUF file (no GGUF header)")
        cur.pos = 4
        version = cur.take("I")
        if version < 2:
            raise ModelNotFoundError(f"{p}: GGUF version {version} is too old (need 2 or later)")
        tensors, count = cur.take("Q"), cur.take("Q")
        items: list[tuple[str, Any]] = [
            ("GGUF.version", version), ("GGUF.tensor_count", tensors)
        ]  # fmt: skip
        for _ in range(count):
            key = cur.string()
            items.append((key, cur.value(cur.take("I"))))
        infos = []
        for _ in range(tensors):
            name = cur.string()
            dims = tuple(cur.take("Q") for _ in range(cur.take("I")))
            infos.append((name, dims, cur.take("I"), cur.take("Q")))
        align = int(dict(items).get("general.alignment", 32))
        start = -(-cur.pos // align) * align
    return Header(tuple(items), tuple(TensorInfo(n, d, t, start + o) for n, d, t, o in infos))


def summary(path: str | Path) -> dict[str, Any]:
    """The facts `hearth models` shows: architecture, trained context length, whether a chat
    template is present (and the template), the model's own name and license if it says."""
    meta = read_metadata(path)
    arch = meta.get("general.architecture")
    return {
        "architecture": arch,
        "context_length": meta.get(f"{arch}.context_length"),
        "chat_template": meta.get("tokenizer.chat_template"),
        "name": meta.get("general.name"),
        "license": meta.get("general.license"),
    }
