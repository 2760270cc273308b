# tag::on_disk_layout[]
"""Stages 1-2: open a GGUF file zero-copy and validate it.

Parsing is ``gguf.GGUFReader``'s job: it memory-maps the file and walks header, metadata and
tensor infos. This module adds what the reader does not check (bounds, alignment, overlaps,
types, per-architecture keys) and turns every failure into one ``GGUFError`` that names the file,
the quantity, what was found and what was expected.

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
import re
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from gguf import GGMLQuantizationType, GGUFReader, GGUFValueType

from ggufref import formats
from ggufref.errors import GGUFError
from ggufref.weights import QuantTensor

GGUF_MAGIC = 0x46554747  # b"GGUF" read as little-endian u32
SUPPORTED_VERSIONS = (2, 3)
HEADER_BYTES = 24
# Smallest possible encodings, used to reject absurd counts before walking them.
MIN_KV_BYTES = 8 + 4 + 1  # empty key, type, one-byte value
MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8  # empty name, n_dims, one dim, type, offset
MAX_DIMS = 4
LARGE_ARRAY = 4096  # metadata arrays longer than this are not cached (vocabularies, merges)

# Keys every model of an architecture must carry (the ``{arch}.`` prefix is added once, here).
REQUIRED_ARCH_KEYS: dict[str, tuple[str, ...]] = {
    arch: (
        "context_length",
        "embedding_length",
        "block_count",
        "feed_forward_length",
        "attention.head_count",
        "attention.layer_norm_rms_epsilon",
    )
    for arch in ("llama", "mistral", "qwen2", "qwen3", "gemma3")
}

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


class _Reader(GGUFReader):
    """GGUFReader with two changes, both for large vocabularies and hostile files.

    * Arrays of scalars are read as one memmap view, and arrays of strings as a table of
      (offset, length) pairs, instead of two numpy objects per element: a 262144-token vocab
      then opens in ~0.1 s and a few MB instead of ~8 s and ~500 MB.
    * Tensor infos are checked (type id, dims, bounds) before the reader builds views of them.
    """

    def __init__(self, path: Path, fh: BinaryIO):
        self._path = path
        self._size = os.fstat(fh.fileno()).st_size
        self.string_arrays: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        # np.memmap takes the open file: the bytes we validate are the bytes of this inode,
        # even if the path is replaced or unlinked meanwhile.
        super().__init__(fh, "r")  # type: ignore[arg-type]

    def _get_str(self, offset: int):  # type: ignore[no-untyped-def]
        slen = self._get(offset, np.uint64)
        if len(slen) != 1 or int(slen[0]) > self._size - offset - 8:
            found = int(slen[0]) if len(slen) else "nothing"
            raise _Truncated(f"string at byte {offset} (length {found})")
        return super()._get_str(offset)

    def _get_field_parts(self, orig_offs: int, raw_type: int):  # type: ignore[no-untyped-def]
        vtype = GGUFValueType(int(raw_type))
        if vtype in _SCALAR_NP:  # the base reader returns an empty array past the end
            if orig_offs + np.dtype(_SCALAR_NP[vtype]).itemsize > self._size:
                raise _Truncated(f"{vtype.name} value at byte {orig_offs}")
            return super()._get_field_parts(orig_offs, raw_type)
        if vtype != GGUFValueType.ARRAY:
            return super()._get_field_parts(orig_offs, raw_type)
        raw_itype = self._get(orig_offs, np.uint32)
        alen = self._get(orig_offs + 4, np.uint64)
        if len(raw_itype) != 1 or len(alen) != 1:
            raise _Truncated("array header")
        itype, count, offs = GGUFValueType(int(raw_itype[0])), int(alen[0]), orig_offs + 12
        if itype in _SCALAR_NP:
            size = count * np.dtype(_SCALAR_NP[itype]).itemsize
            if offs + size > self._size:
                raise _Truncated(f"array of {count} {itype.name}")
            items = self._get(offs, _SCALAR_NP[itype], count)
            return 12 + size, [raw_itype, alen, items], [2], [GGUFValueType.ARRAY, itype]
        if itype == GGUFValueType.STRING:
            return self._string_array(orig_offs, raw_itype, alen, count)
        # Arrays of arrays: the format allows them, no model uses them, llama.cpp refuses them,
        # and walking them costs a few numpy objects per item. Refuse them too.
        raise _Unsupported(f"metadata array at byte {orig_offs}: item type {itype.name}")

    def _string_array(self, orig_offs: int, raw_itype: np.ndarray, alen: np.ndarray, count: int):  # type: ignore[no-untyped-def]
        if count * 8 > self._size - orig_offs - 12:
            raise _Truncated(f"array of {count} strings")
        buf = memoryview(np.asarray(self.data))  # type: ignore[arg-type]
        starts = np.empty(count, dtype=np.int64)
        lengths = np.empty(count, dtype=np.int64)
        offs = orig_offs + 12
        for i in range(count):
            if offs + 8 > self._size:
                raise _Truncated(f"string {i} of {count}")
            n = int.from_bytes(buf[offs : offs + 8], "little")
            offs += 8
            if n > self._size - offs:
                raise _Truncated(f"string {i} of {count} ({n} bytes)")
            starts[i], lengths[i] = offs, n
            offs += n
        self.string_arrays[orig_offs] = (starts, lengths)
        return offs - orig_offs, [raw_itype, alen], [], [GGUFValueType.ARRAY, GGUFValueType.STRING]

    def _build_tensors(self, start_offs: int, fields: list) -> None:  # type: ignore[override]
        for field in fields:
            _check_tensor_info(self._path, self._size, start_offs, self.alignment, field)
        super()._build_tensors(start_offs, fields)


class _Truncated(Exception):
    """Raised inside the reader when a length runs past the end of the file."""


class _Unsupported(Exception):
    """Raised inside the reader for a structure the format allows but this loader refuses."""


# tag::check_tensor_info[]
def _check_tensor_info(path: Path, size: int, start: int, align: int, field: Any) -> None:
    _, name_data, n_dims, dims, raw_dtype, offset = field.parts
    name = bytes(name_data).decode("utf-8", errors="replace")
    if len(raw_dtype) != 1 or len(offset) != 1 or len(n_dims) != 1:
        raise GGUFError(path, f"tensor {name!r}: info", "truncated", "a complete tensor info")
    if not 1 <= int(n_dims[0]) <= MAX_DIMS or len(dims) != int(n_dims[0]):
        raise GGUFError(path, f"tensor {name!r}: n_dims", int(n_dims[0]), f"1..{MAX_DIMS}")
    try:
        qtype = GGMLQuantizationType(int(raw_dtype[0]))
    except ValueError:
        raise GGUFError(
            path, f"tensor {name!r}: ggml type id", int(raw_dtype[0]), "a known ggml type"
        ) from None
    ne = [int(d) for d in dims]
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
    off = int(offset[0])
    if off % align:
        raise GGUFError(path, f"tensor {name!r}: offset", off, f"a multiple of alignment {align}")
    if start + off + nbytes > size:
        raise GGUFError(
            path,
            f"tensor {name!r}: data [{start + off}, {start + off + nbytes})",
            f"past the end of the file ({size} bytes)",
            "inside the file",
        )


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


def _reader_error(path: Path, err: Exception) -> GGUFError:
    msg = str(err)
    if isinstance(err, _Truncated):
        return GGUFError(
            path, f"metadata {msg}", "runs past the end of the file", "inside the file"
        )
    if isinstance(err, _Unsupported):
        return GGUFError(path, msg, "nested array", "an array of scalars or strings")
    m = re.search(r"(\d+) is not a valid GGUFValueType", msg)
    if m:
        return GGUFError(path, "metadata value type", int(m.group(1)), "a GGUF value type 0..12")
    if "Duplicate" in msg or "duplicated" in msg:
        return GGUFError(path, "names", msg, "unique keys and tensor names")
    if isinstance(err, UnicodeDecodeError):
        return GGUFError(path, "string", "invalid UTF-8", "UTF-8 text")
    if isinstance(err, (IndexError, ValueError, OverflowError)) and "alignment" not in msg:
        return GGUFError(
            path,
            "file structure",
            f"truncated or corrupt ({msg or type(err).__name__})",
            "a complete GGUF file",
        )
    return GGUFError(path, "file structure", msg or type(err).__name__, "a valid GGUF file")


class GGUFFile:
    """A validated, memory-mapped GGUF file: metadata and tensors, nothing copied."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self._fh, self.size = _open_checked(self.path)
        weakref.finalize(self, self._fh.close)
        try:
            self._reader = _Reader(self.path, self._fh)
        except GGUFError:
            raise
        except (MemoryError, RecursionError) as err:
            raise GGUFError(
                self.path, "file structure", type(err).__name__, "a sane GGUF file"
            ) from None
        except Exception as err:  # the reader raises ValueError/KeyError/IndexError/...
            raise _reader_error(self.path, err) from None
        r = self._reader
        self.version = int(r.fields["GGUF.version"].parts[0][0])
        self.alignment = int(r.alignment)
        self.data_offset = int(r.data_offset)
        self._cache: dict[str, Any] = {}
        self.tensors: dict[str, TensorInfo] = {}
        for t in r.tensors:
            shape = tuple(int(d) for d in reversed(t.shape.tolist()))
            raw = r.data[t.data_offset : t.data_offset + t.n_bytes]
            self.tensors[t.name] = TensorInfo(
                t.name, t.tensor_type, shape, int(t.data_offset), int(t.n_bytes), raw
            )
        self._check_overlaps()
        self.arch = self.get_str("general.architecture", "")
        self._check_arch_keys()

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
        return [k for k in self._reader.fields if not k.startswith("GGUF.")]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.keys())

    def with_prefix(self, *prefixes: str) -> dict[str, Any]:
        """Decoded values of every key starting with one of `prefixes` (e.g. "tokenizer.")."""
        return {k: self.get(k) for k in self.keys() if k.startswith(prefixes)}

    def __contains__(self, key: str) -> bool:
        return key in self._reader.fields

    def get(self, key: str, default: Any = None) -> Any:
        """The decoded value of a metadata key: str, int, float, bool or a list of those."""
        if key in self._cache:
            return self._cache[key]
        field = self._reader.fields.get(key)
        if field is None:
            return default
        value = self._decode(field)
        if not (isinstance(value, list) and len(value) > LARGE_ARRAY):
            self._cache[key] = value  # a vocabulary is decoded per call: its user keeps it
        return value

    def _decode(self, field: Any) -> Any:
        kind = field.types[0]
        if kind == GGUFValueType.STRING:
            return bytes(field.parts[-1]).decode("utf-8", errors="replace")
        if kind != GGUFValueType.ARRAY:
            return field.parts[-1].tolist()[0]
        if field.types[-1] == GGUFValueType.STRING and field.offset in self._string_table:
            starts, lengths = self._string_table[field.offset]
            return _strings(self._reader.data, starts, lengths)
        if len(field.data) == 1 and field.types[-1] in _SCALAR_NP:
            return field.parts[field.data[0]].tolist()
        return field.contents()

    @property
    def _string_table(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        # keyed by the array value's offset: the field's own offset + key + type bytes
        if "_strtab" not in self._cache:
            table = {}
            for field in self._reader.fields.values():
                if len(field.parts) < 3:  # the synthetic GGUF.* header fields
                    continue
                value_offs = field.offset + 8 + len(field.parts[1]) + 4
                if value_offs in self._reader.string_arrays:
                    table[field.offset] = self._reader.string_arrays[value_offs]
            self._cache["_strtab"] = table
        return self._cache["_strtab"]

    def array_len(self, key: str) -> int:
        field = self._reader.fields.get(key)
        if field is None:
            return 0
        if field.types[0] != GGUFValueType.ARRAY:
            return 1
        return int(field.parts[4][0])  # parts: key len, key, value type, item type, count, ...

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
        for key in self.keys():
            n = self.array_len(key)
            field = self._reader.fields[key]
            if field.types[0] == GGUFValueType.ARRAY and n > max_items:
                out[key] = {"length": n, "head": self._head(key, max_items)}
            else:
                out[key] = self.get(key)
        return out

    def _head(self, key: str, k: int) -> list[Any]:
        field = self._reader.fields[key]
        if field.offset in self._string_table:
            starts, lengths = self._string_table[field.offset]
            return _strings(self._reader.data, starts[:k], lengths[:k])
        value = self.get(key)
        return list(value[:k]) if isinstance(value, list) else [value]

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
        if t.qtype not in formats.LAYOUTS:
            names = ", ".join(lay.name for lay in formats.LAYOUTS.values())
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
    """Decode a table of (offset, length) strings with one copy of their byte range."""
    if len(starts) == 0:
        return []
    base = int(starts[0])
    blob = bytes(mm[base : int(starts[-1] + lengths[-1])])
    return [
        blob[s - base : s - base + n].decode("utf-8", errors="replace")
        for s, n in zip(starts.tolist(), lengths.tolist(), strict=True)
    ]


def open_gguf(path: str | os.PathLike[str]) -> GGUFFile:
    """Open and validate a GGUF file; raises GGUFError with a one-line message on any problem."""
    return GGUFFile(path)


def memory_plan(f: GGUFFile, n_ctx: int = 1024) -> Any:
    """The MemoryPlan of a model file for a context of n_ctx positions."""
    from ggufref.weights import MemoryPlan

    tensors = {t.name: (t.nbytes, int(np.prod(t.shape))) for t in f.tensors.values()}
    n_head = int(f.arch_get("attention.head_count", 1) or 1)
    n_embd = int(f.arch_get("embedding_length", 0) or 0)
    head_dim = int(f.arch_get("attention.key_length", n_embd // n_head) or 0)
    return MemoryPlan.build(
        tensors,
        n_layer=int(f.arch_get("block_count", 0) or 0),
        n_head_kv=int(f.arch_get("attention.head_count_kv", n_head) or n_head),
        head_dim=head_dim,
        head_dim_v=int(f.arch_get("attention.value_length", head_dim) or head_dim),
        n_ctx=n_ctx,
    )
