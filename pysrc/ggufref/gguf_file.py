# tag::on_disk_layout[]
"""Stages 1-2: open a GGUF file zero-copy and validate it.

The file is memory-mapped and walked top to bottom by the short parser below, one field of the
layout at a time, each length checked against the bytes that are left before it is used. Every
failure becomes one ``GGUFError`` that names the file, the quantity, what was found and what was
expected. (``gguf.GGUFReader`` is the oracle in the tests and writes the synthetic models; see
the design note in docs explanation/gguf-on-disk for why the engine does not parse through it.)

On-disk layout (little-endian)::

    +--------------------+ 0
    | magic "GGUF"  u32  |
    | version       u32  |  2 or 3
    | tensor_count  u64  |
    | kv_count      u64  |
    +--------------------+ 24
    | kv_count x (key: string, value_type: u32, value)    metadata
    +--------------------+
    | tensor_count x (name: string, n_dims: u32, ne: u64[n_dims], type: u32, offset: u64)
    +--------------------+ padding to general.alignment (default 32)
    | tensor data: each tensor at data_start + offset, offset % alignment == 0
    +--------------------+ end of file

A string is ``u64 length`` + bytes; an array is ``u32 item_type`` + ``u64 count`` + items.
"""
# end::on_disk_layout[]

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType

from ggufref import arch, formats
from ggufref._kernels import ffi as _ffi
from ggufref._kernels import lib as _lib
from ggufref.errors import GGUFError
from ggufref.weights import QuantTensor

U32 = GGUFValueType.UINT32
GGUF_MAGIC = 0x46554747  # b"GGUF" read as little-endian u32
SUPPORTED_VERSIONS = (2, 3)
HEADER_BYTES = 24
# Smallest possible encodings, used to reject absurd counts before walking them.
MIN_KV_BYTES = 8 + 4 + 1  # empty key, type, one-byte value
MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # empty name, n_dims, one dim, type, offset
MAX_DIMS = 4

# Keys every model of an architecture must carry (the ``{arch}.`` prefix is added once, here).
REQUIRED_ARCH_KEYS: dict[str, tuple[str, ...]] = {a: arch.REQUIRED_KEYS for a in arch.SUPPORTED}

_SCALAR_NP = {
    GGUFValueType.UINT8: np.uint8,
    GGUFValueType.INT8: np.int8,
    GGUFValueType.UINT16: np.uint16,
    GGUFValueType.INT16: np.int16,
    GGUFValueType.UINT32: np.uint32,
    GGUFValueType.INT32: np.int32,
    GGUFValueType.FLOAT32: np.float32,
    GGUFValueType.UINT64: np.uint64,
    GGUFValueType.INT64: np.int64,
    GGUFValueType.FLOAT64: np.float64,
    GGUFValueType.BOOL: np.bool_,
}


# tag::parser[]
@dataclass(frozen=True)
class Value:
    """One metadata value where it sits in the file.

    vtype: its GGUF type; for arrays, itype is the item type and count the number of items.
    scalar: a decoded scalar or string; items: a scalar array as a memmap view (no copy);
    strings: a string array as (starts, lengths) byte offsets into the file.
    """

    vtype: GGUFValueType
    offset: int  # byte offset of the value (after its key and type)
    scalar: Any = None
    itype: GGUFValueType | None = None
    count: int = 1
    items: np.ndarray | None = None
    strings: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class RawTensorInfo:
    name: str
    ne: tuple[int, ...]  # GGUF order: fastest-varying first
    type_id: int
    offset: int  # relative to the start of the tensor data
    at: int  # byte offset of this tensor info in the file


class _Parser:
    """Walks the layout above over a uint8 memmap; pos is the next byte to read."""

    def __init__(self, path: Path, mm: np.ndarray):
        self.path, self.mm, self.size, self.pos = path, mm, len(mm), 0

    def take(self, n: int, what: str) -> np.ndarray:
        if n < 0 or n > self.size - self.pos:
            raise GGUFError(
                self.path,
                f"metadata {what} at byte {self.pos}",
                f"{n} bytes, past the end of the file ({self.size} bytes)",
                "inside the file",
            )
        out = self.mm[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, dtype: type, what: str) -> Any:
        size = np.dtype(dtype).itemsize
        return self.take(size, what).view(np.dtype(dtype).newbyteorder("<"))[0].item()

    def string(self, what: str) -> bytes:
        n = self.scalar(np.uint64, f"{what} length")
        if n > self.size - self.pos:
            raise GGUFError(
                self.path,
                f"{what}: string at byte {self.pos - 8}",
                f"length {n}, past the end of the file ({self.size} bytes)",
                "inside the file",
            )
        return bytes(self.take(n, what))

    def text(self, what: str) -> str:
        raw = self.string(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise GGUFError(self.path, what, f"invalid UTF-8 {raw[:40]!r}", "UTF-8 text") from None

    def value_type(self, what: str) -> GGUFValueType:
        raw = self.scalar(np.uint32, what)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise GGUFError(self.path, what, raw, "a GGUF value type 0..12") from None

    def value(self, vtype: GGUFValueType, key: str) -> Value:
        at = self.pos
        if vtype in _SCALAR_NP:
            v = self.scalar(_SCALAR_NP[vtype], f"{vtype.name} value of {key}")
            return Value(vtype, at, bool(v) if vtype == GGUFValueType.BOOL else v)
        if vtype == GGUFValueType.STRING:
            return Value(vtype, at, self.string(f"value of {key}").decode("utf-8", "replace"))
        itype = self.value_type(f"metadata key {key}: array item type")
        count = self.scalar(np.uint64, f"array length of {key}")
        if itype in _SCALAR_NP:
            dtype = np.dtype(_SCALAR_NP[itype]).newbyteorder("<")
            if count > (self.size - self.pos) // dtype.itemsize:
                self.take(self.size + 1, f"array of {count} {itype.name} ({key})")  # raises
            items = self.take(count * dtype.itemsize, key).view(dtype)
            return Value(vtype, at, itype=itype, count=count, items=items)
        if itype == GGUFValueType.STRING:
            return Value(vtype, at, itype=itype, count=count, strings=self.string_table(count, key))
        # Arrays of arrays: the format allows them, no model uses them, llama.cpp refuses them.
        raise GGUFError(
            self.path,
            f"metadata key {key}: array of {itype.name}",
            "nested array",
            "an array of scalars or strings",
        )

    def string_table(self, count: int, key: str) -> tuple[np.ndarray, np.ndarray]:
        """A string array as (starts, lengths): a 262144-token vocabulary becomes two int64
        arrays, not one Python object per token. The walk from string to string is a C loop
        (csrc/strings.c); a string that does not fit is reported here."""
        if count > (self.size - self.pos) // 8:  # each string takes at least its u64 length
            self.take(self.size + 1, f"array of {count} strings ({key})")  # raises
        starts = np.empty(count, dtype=np.int64)
        lengths = np.empty(count, dtype=np.int64)
        end = _ffi.new("uint64_t *")
        bad = _lib.ggr_string_table(
            _ffi.from_buffer("uint8_t[]", self.mm),
            self.size,
            self.pos,
            count,
            _ffi.from_buffer("int64_t[]", starts),
            _ffi.from_buffer("int64_t[]", lengths),
            end,
        )
        self.pos = int(end[0])
        if bad >= 0:
            what = f"string {bad} of {count} ({key})"
            n = self.take(8, what).view("<u8")[0].item()  # raises when the length does not fit
            self.take(n, what)  # raises: the bytes do not fit
        return starts, lengths

    def metadata(self, n_kv: int) -> dict[str, Value]:
        out: dict[str, Value] = {}
        for _ in range(n_kv):
            key = self.text("metadata key")
            value = self.value(self.value_type(f"metadata key {key}: value type"), key)
            if key in out:
                raise GGUFError(self.path, f"metadata key {key}", "duplicated", "unique keys")
            out[key] = value
        return out

    def tensor_infos(self, n_tensors: int) -> list[RawTensorInfo]:
        out = []
        for _ in range(n_tensors):
            at = self.pos
            name = self.text("tensor name")
            n_dims = self.scalar(np.uint32, f"tensor {name!r}: n_dims")
            if not 1 <= n_dims <= MAX_DIMS:
                raise GGUFError(self.path, f"tensor {name!r}: n_dims", n_dims, f"1..{MAX_DIMS}")
            ne = tuple(self.scalar(np.uint64, f"tensor {name!r}: ne") for _ in range(n_dims))
            type_id = self.scalar(np.uint32, f"tensor {name!r}: type")
            offset = self.scalar(np.uint64, f"tensor {name!r}: offset")
            out.append(RawTensorInfo(name, ne, type_id, offset, at))
        return out


# end::parser[]


# tag::check_tensor_info[]
def _check_tensor_info(path: Path, size: int, start: int, align: int, t: RawTensorInfo) -> int:
    """Type, dimensions, alignment and bounds of one tensor; returns its byte size."""
    name = t.name
    try:
        qtype = GGMLQuantizationType(t.type_id)
    except ValueError:
        raise GGUFError(
            path, f"tensor {name!r}: ggml type id", t.type_id, "a known ggml type"
        ) from None
    ne = list(t.ne)
    if any(d <= 0 for d in ne):
        raise GGUFError(path, f"tensor {name!r}: dimensions", ne, "all > 0")
    block, type_size = _quant_size(qtype)
    if ne[0] % block:
        raise GGUFError(
            path,
            f"tensor {name!r}: row length (ne[0])",
            ne[0],
            f"a multiple of {block} ({qtype.name} block size)",
        )
    n_elems = 1
    for d in ne:
        n_elems *= d
    nbytes = n_elems // block * type_size
    if t.offset % align:
        raise GGUFError(
            path, f"tensor {name!r}: offset", t.offset, f"a multiple of alignment {align}"
        )
    if start + t.offset + nbytes > size:
        raise GGUFError(
            path,
            f"tensor {name!r}: data [{start + t.offset}, {start + t.offset + nbytes})",
            f"past the end of the file ({size} bytes)",
            "inside the file",
        )
    return nbytes


# end::check_tensor_info[]


def _quant_size(qtype: GGMLQuantizationType) -> tuple[int, int]:
    from gguf.constants import GGML_QUANT_SIZES

    return GGML_QUANT_SIZES[qtype]


# tag::tensor_info[]
@dataclass(frozen=True)
class TensorInfo:
    """One tensor as it sits in the file.

    shape: numpy order (slowest first), i.e. GGUF's ``ne`` reversed
    raw:   uint8 (nbytes,) memmap view of the stored blocks
    """

    name: str
    qtype: GGMLQuantizationType
    shape: tuple[int, ...]
    offset: int  # absolute byte offset in the file
    nbytes: int
    raw: np.ndarray


# end::tensor_info[]


def _open_checked(path: Path) -> tuple[BinaryIO, int]:
    """Open the file and check magic, version and counts before the reader walks it.

    Returns the open file (kept for the life of the GGUFFile, see ``check_unchanged``) and its
    size."""
    if not path.exists():
        raise GGUFError(path, "model file", "no such file", "an existing .gguf file")
    if not path.is_file():
        raise GGUFError(path, "model file", "not a regular file", "a .gguf file")
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed by GGUFFile's finalizer
    except OSError as err:
        why = err.strerror or type(err).__name__
        raise GGUFError(path, "model file", why, "a readable file") from None
    try:
        return fh, _check_header(path, fh)
    except BaseException:
        fh.close()
        raise


# tag::check_header[]
def _check_header(path: Path, fh: BinaryIO) -> int:
    """Magic, version and counts. Returns the size."""
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(HEADER_BYTES)
    if len(head) < 4 or int.from_bytes(head[:4], "little") != GGUF_MAGIC:
        raise GGUFError(path, "magic", repr(head[:4]), "b'GGUF' (not a GGUF file)")
    if len(head) < HEADER_BYTES:
        raise GGUFError(path, "header", f"{len(head)} bytes (truncated)", f"{HEADER_BYTES} bytes")
    version = int.from_bytes(head[4:8], "little")
    if version not in SUPPORTED_VERSIONS:
        raise GGUFError(path, "version", version, " or ".join(map(str, SUPPORTED_VERSIONS)))
    n_tensors = int.from_bytes(head[8:16], "little")
    n_kv = int.from_bytes(head[16:24], "little")
    room = size - HEADER_BYTES
    if n_kv * MIN_KV_BYTES > room:
        raise GGUFError(
            path,
            "metadata kv_count",
            n_kv,
            f"at most {room // MIN_KV_BYTES} for a {size}-byte file",
        )
    if n_tensors * MIN_TENSOR_INFO_BYTES > room:
        raise GGUFError(
            path,
            "tensor_count",
            n_tensors,
            f"at most {room // MIN_TENSOR_INFO_BYTES} for a {size}-byte file",
        )
    return size


# end::check_header[]


class GGUFFile:
    """A validated, memory-mapped GGUF file: metadata and tensors, nothing copied."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._fh, self.size = _open_checked(self.path)
        weakref.finalize(self, self._fh.close)
        # np.memmap takes the open file: the bytes we validate are the bytes of this inode,
        # even if the path is replaced or unlinked meanwhile.
        self._mm = np.memmap(self._fh, dtype=np.uint8, mode="r")
        try:
            self._parse()
        except (MemoryError, RecursionError) as err:
            raise GGUFError(
                self.path, "file structure", type(err).__name__, "a sane GGUF file"
            ) from None
        self._check_overlaps()
        self.arch = self.get_str("general.architecture", "")
        self._check_arch_keys()

    # tag::parse[]
    def _parse(self) -> None:
        """Header, metadata, tensor infos, padding: the layout above, top to bottom."""
        p = _Parser(self.path, self._mm)
        p.pos = 4  # the magic, checked by _check_header
        self.version = p.scalar(np.uint32, "version")
        n_tensors = p.scalar(np.uint64, "tensor_count")
        n_kv = p.scalar(np.uint64, "kv_count")
        self.entries = p.metadata(n_kv)
        self.alignment = self.get_int("general.alignment", 32)
        if "general.alignment" in self and self.entries["general.alignment"].vtype != U32:
            raise GGUFError(self.path, "general.alignment", "not a UINT32", "a UINT32")
        if self.alignment <= 0 or self.alignment & (self.alignment - 1):
            raise GGUFError(self.path, "general.alignment", self.alignment, "a power of two")
        infos = p.tensor_infos(n_tensors)
        self.data_offset = -(-p.pos // self.alignment) * self.alignment  # round up
        self.tensors: dict[str, TensorInfo] = {}
        for t in infos:
            nbytes = _check_tensor_info(self.path, self.size, self.data_offset, self.alignment, t)
            if t.name in self.tensors:
                raise GGUFError(self.path, f"tensor {t.name!r}", "duplicated", "unique names")
            start = self.data_offset + t.offset
            shape = tuple(reversed(t.ne))  # numpy order: slowest first
            qtype = GGMLQuantizationType(t.type_id)
            raw = self._mm[start : start + nbytes]
            self.tensors[t.name] = TensorInfo(t.name, qtype, shape, start, nbytes, raw)

    # end::parse[]

    # -- validation --------------------------------------------------------------------------

    def _check_overlaps(self) -> None:
        spans = sorted((t.offset, t.offset + t.nbytes, t.name) for t in self.tensors.values())
        for (_, end_a, a), (start_b, _, b) in zip(spans, spans[1:], strict=False):
            if start_b < end_a:
                raise GGUFError(
                    self.path,
                    f"tensors {a!r} and {b!r}",
                    "overlapping data",
                    "disjoint byte ranges",
                )

    def _check_arch_keys(self) -> None:
        if not self.arch:
            raise GGUFError(self.path, "general.architecture", "missing", "a string")
        for suffix in REQUIRED_ARCH_KEYS.get(self.arch, ()):
            if self.arch_key(suffix) not in self:
                raise GGUFError(
                    self.path,
                    f"metadata key {self.arch_key(suffix)}",
                    "missing",
                    f"present for architecture {self.arch}",
                )

    # -- metadata ----------------------------------------------------------------------------

    def keys(self) -> list[str]:
        return list(self.entries)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.keys())

    def with_prefix(self, *prefixes: str) -> dict[str, Any]:
        """Decoded values of every key starting with one of `prefixes` (e.g. "tokenizer.")."""
        return {k: self.get(k) for k in self.keys() if k.startswith(prefixes)}

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def get(self, key: str, default: Any = None) -> Any:
        """The decoded value of a metadata key: str, int, float, bool or a list of those.
        (Lists are built per call: a vocabulary's user keeps its own copy.)"""
        v = self.entries.get(key)
        if v is None:
            return default
        if v.vtype != GGUFValueType.ARRAY:
            return v.scalar
        if v.strings is not None:
            return _strings(self._mm, *v.strings)
        assert v.items is not None
        items = v.items.tolist()
        return [bool(x) for x in items] if v.itype == GGUFValueType.BOOL else items

    def array_len(self, key: str) -> int:
        v = self.entries.get(key)
        return 0 if v is None else v.count

    def _typed(self, key: str, default: Any, kinds: tuple[type, ...], what: str) -> Any:
        value = self.get(key, default)
        if value is _REQUIRED:
            raise GGUFError(self.path, f"metadata key {key}", "missing", what)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            raise GGUFError(self.path, f"metadata key {key}", repr(value)[:60], what)
        return value

    def get_str(self, key: str, default: Any = None) -> str:
        return self._typed(key, _REQUIRED if default is None else default, (str,), "a string")

    def get_int(self, key: str, default: Any = None) -> int:
        return int(
            self._typed(key, _REQUIRED if default is None else default, (int,), "an integer")
        )

    def get_float(self, key: str, default: Any = None) -> float:
        value = self._typed(
            key, _REQUIRED if default is None else default, (int, float), "a number"
        )
        return float(value)

    def get_bool(self, key: str, default: Any = None) -> bool:
        return bool(self._typed(key, _REQUIRED if default is None else default, (bool,), "a bool"))

    def arch_key(self, suffix: str) -> str:
        """``attention.head_count`` -> ``gemma3.attention.head_count`` (the prefix lives here)."""
        return f"{self.arch}.{suffix}"

    def arch_get(self, suffix: str, default: Any = None) -> Any:
        return self.get(self.arch_key(suffix), default)

    def metadata_summary(self, max_items: int = 8) -> dict[str, Any]:
        """All metadata, with long arrays cut to their first items and a length (for display)."""
        out: dict[str, Any] = {}
        for key, v in self.entries.items():
            if v.vtype == GGUFValueType.ARRAY and v.count > max_items:
                if v.strings is not None:
                    head = _strings(self._mm, v.strings[0][:max_items], v.strings[1][:max_items])
                else:
                    head = self.get(key)[:max_items]
                out[key] = {"length": v.count, "head": head}
            else:
                out[key] = self.get(key)
        return out

    # -- tensors -----------------------------------------------------------------------------

    def tensor(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise GGUFError(
                self.path, f"tensor {name!r}", "missing", f"present for architecture {self.arch}"
            ) from None

    def quant_tensor(self, name: str) -> QuantTensor:
        """A 2-D weight as a QuantTensor over the mapped bytes (no copy)."""
        t = self.tensor(name)
        if len(t.shape) != 2:
            raise GGUFError(self.path, f"tensor {name!r}: shape", t.shape, "2 dimensions")
        if t.qtype not in formats.WEIGHT_TYPES:
            names = ", ".join(qtype.name for qtype in formats.WEIGHT_TYPES)
            raise GGUFError(self.path, f"tensor {name!r}: type", t.qtype.name, f"one of {names}")
        rows, cols = t.shape
        return QuantTensor(t.qtype, (rows, cols), t.raw.reshape(rows, -1), name)

    def vector(self, name: str) -> np.ndarray:
        """A small tensor (norm weight, bias) as float32: a view for F32, decoded otherwise."""
        t = self.tensor(name)
        if t.qtype == GGMLQuantizationType.F32:
            return t.raw.view("<f4").reshape(t.shape)
        if t.qtype not in formats.LAYOUTS:
            raise GGUFError(self.path, f"tensor {name!r}: type", t.qtype.name, "F32/F16/BF16/...")
        return formats.dequantize(t.qtype, t.raw).reshape(t.shape)

    # -- checks for the generate path -------------------------------------------------------

    # tag::check_scales[]
    def check_scales(self) -> None:
        """Every fp16 scale (d, dmin, m) of every block-quantized tensor is finite.

        A NaN or inf scale poisons every logit; C would happily multiply it. Only the scale
        fields are read, as a strided uint16 view ((n_blocks, 1) per field, no copy of the
        codes): an fp16 number is inf or NaN exactly when its 5 exponent bits are all ones.
        """
        for t in self.tensors.values():
            lay = formats.LAYOUTS.get(t.qtype)
            if lay is None or lay.block_elems == 1:  # F32/F16/BF16 have no block scales
                continue
            blocks = t.raw.reshape(-1, lay.block_bytes)  # (n_blocks, block_bytes)
            offs = lay.offsets()
            for fld in lay.fields:
                if fld.dtype != "f2":
                    continue
                bits = blocks[:, offs[fld.name] : offs[fld.name] + 2].view("<u2")  # (n_blocks, 1)
                bad = (bits & 0x7C00) == 0x7C00
                if bad.any():
                    i = int(np.argmax(bad))
                    value = float(bits[i, 0:1].view("<f2")[0])
                    raise GGUFError(
                        self.path,
                        f"tensor {t.name!r}: block {i} scale {fld.name}",
                        value,
                        "a finite fp16 number",
                    )

    # end::check_scales[]

    def check_unchanged(self) -> None:
        """Refuse to go on if the file shrank since it was opened.

        The tensors are a memory map: reading a page past the new end of a truncated file kills
        the process with SIGBUS, which Python cannot catch. The engine calls this before each
        generation; a truncation *during* a generation cannot be caught this way. Unlinking the
        file is harmless: the open file and the map keep its data alive.
        """
        now = os.fstat(self._fh.fileno()).st_size
        if now < self.size:
            raise GGUFError(
                self.path,
                "file size",
                f"{now} bytes (the file shrank while in use)",
                f"{self.size} bytes as when it was opened",
            )


_REQUIRED = object()


def _strings(mm: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> list[str]:
    """Decode a table of (offset, length) strings, each as UTF-8 with U+FFFD for bad bytes."""
    if len(starts) == 0:
        return []
    joined = _strings_in_one_decode(mm, starts, lengths)
    if joined is not None:
        return joined
    base = int(starts[0])
    blob = bytes(mm[base : int(starts[-1] + lengths[-1])])
    return [
        blob[s - base : s - base + n].decode("utf-8", errors="replace")
        for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)
    ]


def _strings_in_one_decode(
    mm: np.ndarray, starts: np.ndarray, lengths: np.ndarray
) -> list[str] | None:
    """The same strings with one decode for the whole table instead of one per string.

    The byte range is copied once; one byte of each gap between strings (the next string's
    length field) becomes a NUL separator and the rest of the gap is dropped; the text is split
    at the NULs. A NUL never continues a UTF-8 sequence, so each piece decodes as its string
    alone would. None when a string holds a NUL itself (an extra piece) or strings touch.
    """
    count = len(starts)
    if count > 1 and (starts[1:] - (starts[:-1] + lengths[:-1])).min() < 1:
        return None
    base = int(starts[0])
    raw = np.array(mm[base : int(starts[-1] + lengths[-1])], dtype=np.uint8)
    edges = np.zeros(len(raw) + 1, dtype=np.int8)  # +1 where a string starts, -1 after it
    edges[starts - base] = 1
    edges[starts + lengths - base] -= 1  # (an empty string: +1 and -1 at the same byte)
    keep = np.cumsum(edges[:-1], dtype=np.int8).view(np.bool_)  # 1 inside a string, else 0
    sep = starts[1:] - 1 - base  # the last byte of each gap
    raw[sep] = 0
    keep[sep] = True
    pieces = raw[keep].tobytes().decode("utf-8", errors="replace").split("\x00")
    return pieces if len(pieces) == count else None


def open_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Open and validate a GGUF file; raises GGUFError with a one-line message on any problem."""
    return GGUFFile(path)


def memory_plan(f: GGUFFile, n_ctx: int = 1024) -> Any:
    """The MemoryPlan of a model file for a context of n_ctx positions.

    The KV-cache dimensions are derived as ModelConfig derives them (config.attention_dims);
    the required keys are read leniently, since ``inspect`` plans files the engine refuses."""
    from ggufref.config import attention_dims
    from ggufref.weights import MemoryPlan

    tensors = {t.name: (t.nbytes, int(np.prod(t.shape))) for t in f.tensors.values()}
    n_head = int(f.arch_get("attention.head_count", 1) or 1)
    n_embd = int(f.arch_get("embedding_length", 0) or 0)
    n_head_kv, head_dim, head_dim_v = attention_dims(f, n_head, n_embd)
    return MemoryPlan.build(
        tensors,
        n_layer=int(f.arch_get("block_count", 0) or 0),
        n_head_kv=n_head_kv,
        head_dim=head_dim,
        head_dim_v=head_dim_v,
        n_ctx=n_ctx,
    )
