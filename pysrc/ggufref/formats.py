"""Stage 4a: block formats — one table of layouts, one readable numpy decoder per format.

Every quantized format cuts a row into blocks of ``block_elems`` weights and stores each block as
a few scale fields plus packed integer codes. The table below is the single source of truth for
block sizes in Python (the C structs in ``csrc/ggufref_blocks.h`` static_assert the same sizes, and
the docs' format table is generated from it).

Shapes in this file: ``blocks`` is ``uint8 (n_blocks, block_bytes)``; decoders return
``float32 (n_blocks, block_elems)``. Decoders are references for tests and docs: they are written
to read as the block layout, not to be fast, and they are bit-exact with ``gguf.quants``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType as T

QK = 32  # elements per block of the legacy formats
QK_K = 256  # elements per super-block of the K-quants


# tag::layout[]
@dataclass(frozen=True)
class Field:
    name: str  # ggml's field name (d, dmin, m, scales, qs, qh, ql, bsums)
    dtype: str  # numpy dtype of one element: "f2" (fp16), "f4", "u1", "i1", "i2", "bf16"
    count: int  # number of elements

    @property
    def nbytes(self) -> int:
        return self.count * (2 if self.dtype == "bf16" else np.dtype(self.dtype).itemsize)


@dataclass(frozen=True)
class BlockLayout:
    name: str
    qtype: T
    block_elems: int  # weights per block
    fields: tuple[Field, ...]  # in storage order
    formula: str  # how one weight is rebuilt from its block

    @property
    def block_bytes(self) -> int:
        return sum(f.nbytes for f in self.fields)

    @property
    def bits_per_weight(self) -> float:
        return 8 * self.block_bytes / self.block_elems

    def offsets(self) -> dict[str, int]:
        """Byte offset of each field inside one block."""
        out, pos = {}, 0
        for f in self.fields:
            out[f.name] = pos
            pos += f.nbytes
        return out

    def row_bytes(self, n_elems: int) -> int:
        return (n_elems // self.block_elems) * self.block_bytes


def _layout(
    name: str, qtype: T, n: int, formula: str, *fields: tuple[str, str, int]
) -> BlockLayout:
    return BlockLayout(name, qtype, n, tuple(Field(*f) for f in fields), formula)


# Bytes per block as field sums, e.g. Q4_K = 2 + 2 + 12 + QK_K//2 = 144.
LAYOUTS: dict[T, BlockLayout] = {
    lay.qtype: lay
    for lay in (
        _layout("F32", T.F32, 1, "x", ("x", "f4", 1)),
        _layout("F16", T.F16, 1, "x", ("x", "f2", 1)),
        _layout("BF16", T.BF16, 1, "x", ("x", "bf16", 1)),
        _layout("Q4_0", T.Q4_0, QK, "d * (q - 8)", ("d", "f2", 1), ("qs", "u1", QK // 2)),
        _layout(
            "Q4_1", T.Q4_1, QK, "d * q + m", ("d", "f2", 1), ("m", "f2", 1), ("qs", "u1", QK // 2)
        ),
        _layout(
            "Q5_0",
            T.Q5_0,
            QK,
            "d * (q - 16)",
            ("d", "f2", 1),
            ("qh", "u1", QK // 8),
            ("qs", "u1", QK // 2),
        ),
        _layout(
            "Q5_1",
            T.Q5_1,
            QK,
            "d * q + m",
            ("d", "f2", 1),
            ("m", "f2", 1),
            ("qh", "u1", QK // 8),
            ("qs", "u1", QK // 2),
        ),
        _layout("Q8_0", T.Q8_0, QK, "d * q", ("d", "f2", 1), ("qs", "i1", QK)),
        _layout(
            "Q2_K",
            T.Q2_K,
            QK_K,
            "d * sc[j] * q - dmin * m[j]",
            ("scales", "u1", QK_K // 16),
            ("qs", "u1", QK_K // 4),
            ("d", "f2", 1),
            ("dmin", "f2", 1),
        ),
        _layout(
            "Q3_K",
            T.Q3_K,
            QK_K,
            "d * (sc[j] - 32) * (q - 4 * !hbit)",
            ("hmask", "u1", QK_K // 8),
            ("qs", "u1", QK_K // 4),
            ("scales", "u1", 12),
            ("d", "f2", 1),
        ),
        _layout(
            "Q4_K",
            T.Q4_K,
            QK_K,
            "d * sc[j] * q - dmin * m[j]",
            ("d", "f2", 1),
            ("dmin", "f2", 1),
            ("scales", "u1", 12),
            ("qs", "u1", QK_K // 2),
        ),
        _layout(
            "Q5_K",
            T.Q5_K,
            QK_K,
            "d * sc[j] * q - dmin * m[j]",
            ("d", "f2", 1),
            ("dmin", "f2", 1),
            ("scales", "u1", 12),
            ("qh", "u1", QK_K // 8),
            ("qs", "u1", QK_K // 2),
        ),
        _layout(
            "Q6_K",
            T.Q6_K,
            QK_K,
            "d * sc[j] * (q - 32)",
            ("ql", "u1", QK_K // 2),
            ("qh", "u1", QK_K // 4),
            ("scales", "i1", QK_K // 16),
            ("d", "f2", 1),
        ),
        _layout(
            "Q8_K",
            T.Q8_K,
            QK_K,
            "d * q  (bsums[j] = sum of 16 q, for the K-quant dots)",
            ("d", "f4", 1),
            ("qs", "i1", QK_K),
            ("bsums", "i2", QK_K // 16),
        ),
    )
}
# end::layout[]

# The formats a weight may be stored in (the loader checks): Q8_K only quantizes activations
# for the K-quant dot products; ggml never writes it to a file and no kernel reads it as a weight.
WEIGHT_TYPES = tuple(t for t in LAYOUTS if t != T.Q8_K)


def layout(qtype: T | int) -> BlockLayout:
    """The block layout of a ggml type, or ValueError naming the type."""
    try:
        return LAYOUTS[T(qtype)]
    except (KeyError, ValueError):
        name = getattr(qtype, "name", str(qtype))
        supported = ", ".join(lay.name for lay in LAYOUTS.values())
        raise ValueError(f"unsupported ggml type {name}; supported: {supported}") from None


def split_fields(qtype: T, blocks: np.ndarray) -> dict[str, np.ndarray]:
    """Cut ``uint8 (n_blocks, block_bytes)`` into one array per field, in storage order."""
    lay = layout(qtype)
    blocks = np.ascontiguousarray(blocks, dtype=np.uint8).reshape(-1, lay.block_bytes)
    out: dict[str, np.ndarray] = {}
    for f in lay.fields:
        start = lay.offsets()[f.name]
        raw = blocks[:, start : start + f.nbytes]
        if f.dtype == "bf16":
            out[f.name] = raw.copy()
        else:
            out[f.name] = raw.copy().view(np.dtype(f.dtype).newbyteorder("<"))
    return out


def _f16(x: np.ndarray) -> np.ndarray:
    """fp16 scale field (n_blocks, 1) -> float32 (n_blocks, 1)."""
    return x.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Float formats
# ---------------------------------------------------------------------------------------------


def decode_f32(b: dict[str, np.ndarray]) -> np.ndarray:
    return b["x"].astype(np.float32)


def decode_f16(b: dict[str, np.ndarray]) -> np.ndarray:
    return b["x"].astype(np.float32)


def decode_bf16(b: dict[str, np.ndarray]) -> np.ndarray:
    # bf16 is the top half of an fp32: shift the 16 stored bits into place.
    hi = b["x"].view("<u2").astype(np.uint32)
    return (hi << 16).view(np.float32)


# ---------------------------------------------------------------------------------------------
# Legacy 32-element formats
# ---------------------------------------------------------------------------------------------

# tag::q4_0_map[]
# Q4_0 block, 18 bytes, 32 weights:            x[i] = d * (q[i] - 8)
#
#  byte  0      2                                   18
#        +------+-----------------------------------+
#        |  d   | qs[0..15]                         |
#        | fp16 | byte j = q[j] (low 4) | q[j+16] (high 4)
#        +------+-----------------------------------+
# The first half of the block sits in the low nibbles, the second half in the high nibbles.
# end::q4_0_map[]


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """uint8 (n, 16) packed nibbles -> uint8 (n, 32): low nibbles first, then high nibbles."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1)


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """uint8 (n, 4) = one little-endian uint32 -> uint8 (n, 32): bit i is weight i's 5th bit."""
    bits = qh.view("<u4").astype(np.uint32)  # (n, 1)
    return ((bits >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)


# tag::decode_q4_0[]
def decode_q4_0(b: dict[str, np.ndarray]) -> np.ndarray:
    q = _nibbles(b["qs"]).astype(np.int8) - np.int8(8)  # (n, 32) in [-8, 7]
    return _f16(b["d"]) * q.astype(np.float32)


# end::decode_q4_0[]


def decode_q4_1(b: dict[str, np.ndarray]) -> np.ndarray:
    q = _nibbles(b["qs"]).astype(np.float32)  # (n, 32) in [0, 15]
    return _f16(b["d"]) * q + _f16(b["m"])


# tag::q5_0_map[]
# Q5_0 block, 22 bytes: d (fp16) | qh (4 bytes = uint32, bit i -> weight i) | qs (16 nibble bytes)
#   q[i] = nibble[i] | (bit i of qh) << 4, in [0, 31];   x[i] = d * (q[i] - 16)
# end::q5_0_map[]
def decode_q5_0(b: dict[str, np.ndarray]) -> np.ndarray:
    q = (_nibbles(b["qs"]) | (_fifth_bits(b["qh"]) << 4)).astype(np.int8) - np.int8(16)
    return _f16(b["d"]) * q.astype(np.float32)


def decode_q5_1(b: dict[str, np.ndarray]) -> np.ndarray:
    q = (_nibbles(b["qs"]) | (_fifth_bits(b["qh"]) << 4)).astype(np.float32)
    return _f16(b["d"]) * q + _f16(b["m"])


def decode_q8_0(b: dict[str, np.ndarray]) -> np.ndarray:
    return b["qs"].astype(np.float32) * _f16(b["d"])


# ---------------------------------------------------------------------------------------------
# K-quants: 256-weight super-blocks of 16 or 8 sub-blocks, each with its own small scale
# ---------------------------------------------------------------------------------------------

# tag::k_scales_map[]
# Q4_K / Q5_K scales: 8 sub-blocks x (6-bit scale sc, 6-bit min m) packed into 12 bytes.
#
#  byte:   0    1    2    3  |  4    5    6    7  |  8    9   10   11
#        [sc0][sc1][sc2][sc3]|[m0] [m1] [m2] [m3] |[s4m4][s5m5][s6m6][s7m7]
#  bits:  hh llllll           hh llllll             mmmm ssss
#
#  j < 4 : sc[j] = byte[j]   & 63          m[j] = byte[j+4] & 63
#  j >= 4: sc[j] = (byte[j+4] & 15) | (byte[j-4] >> 6) << 4
#          m[j]  = (byte[j+4] >> 4) | (byte[j]   >> 6) << 4
# The top two bits of bytes 0-7 carry the high bits of sub-blocks 4-7.
# end::k_scales_map[]


# tag::scale_min_k4[]
def scale_min_k4(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 (n, 12) -> (sc, m), each uint8 (n, 8): the 6-bit scales and mins of Q4_K/Q5_K."""
    lo, hi, mix = scales[:, 0:4], scales[:, 4:8], scales[:, 8:12]
    sc = np.concatenate([lo & 63, (mix & 15) | ((lo >> 6) << 4)], axis=1)
    m = np.concatenate([hi & 63, (mix >> 4) | ((hi >> 6) << 4)], axis=1)
    return sc, m


# end::scale_min_k4[]


def _k_sub(dfield: np.ndarray, small: np.ndarray) -> np.ndarray:
    """fp16 (n, 1) super-scale times uint/int (n, s) sub-scales -> float32 (n, s, 1)."""
    return (_f16(dfield) * small.astype(np.float32))[:, :, None]


def decode_q2_k(b: dict[str, np.ndarray]) -> np.ndarray:
    # 16 sub-blocks of 16; scales byte j: low 4 bits = scale, high 4 bits = min.
    # qs: two 32-byte halves; each byte holds 4 crumbs, crumb k (bits 2k..2k+1) belongs to the
    # k-th group of 32 weights of that half.
    n = b["qs"].shape[0]
    dl = _k_sub(b["d"], b["scales"] & 15)  # (n, 16, 1)
    ml = _k_sub(b["dmin"], b["scales"] >> 4)  # (n, 16, 1)
    qs = b["qs"].reshape(n, 2, 1, 32)
    q = (qs >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3  # (n, half, crumb, 32)
    q = q.reshape(n, 16, 16).astype(np.float32)
    return (dl * q - ml).reshape(n, QK_K)


def q3_k_scales(scales: np.ndarray) -> np.ndarray:
    """uint8 (n, 12) -> int8 (n, 16): 16 six-bit scales minus 32.
    Low 4 bits: bytes 0-7 (low nibble for j < 8, high nibble for j >= 8);
    high 2 bits: bytes 8-11, crumb (j // 4) of byte 8 + j % 4."""
    n = scales.shape[0]
    low = np.concatenate([scales[:, 0:8] & 15, scales[:, 0:8] >> 4], axis=1)  # (n, 16)
    hi = (scales[:, 8:12].reshape(n, 1, 4) >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 4, 1)) & 3
    return (low | (hi.reshape(n, 16) << 4)).astype(np.int8) - np.int8(32)


def decode_q3_k(b: dict[str, np.ndarray]) -> np.ndarray:
    # Like Q2_K's 2-bit crumbs, plus a third bit from hmask: bit (4*half + crumb) of hmask[l]
    # is set when weight l of that group is NOT shifted down by 4.
    n = b["qs"].shape[0]
    dl = _k_sub(b["d"], q3_k_scales(b["scales"]))  # (n, 16, 1)
    qs = b["qs"].reshape(n, 2, 1, 32)
    low = (qs >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3  # (n, 2, 4, 32)
    hbit = (b["hmask"].reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
    q = low.reshape(n, 8, 32).astype(np.int8) - (4 * (1 - hbit)).astype(np.int8)
    return (dl * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, QK_K)


# tag::decode_q4_k[]
def decode_q4_k(b: dict[str, np.ndarray]) -> np.ndarray:
    # qs: four 32-byte chunks; chunk c holds sub-block 2c in its low nibbles and 2c+1 in its highs.
    n = b["qs"].shape[0]
    sc, m = scale_min_k4(b["scales"])  # (n, 8) each
    qs = b["qs"].reshape(n, 4, 1, 32)
    q = (qs >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)) & 15  # (n, chunk, nibble, 32)
    q = q.reshape(n, 8, 32).astype(np.float32)
    return (_k_sub(b["d"], sc) * q - _k_sub(b["dmin"], m)).reshape(n, QK_K)


# end::decode_q4_k[]


def decode_q5_k(b: dict[str, np.ndarray]) -> np.ndarray:
    # As Q4_K, plus a fifth bit: bit s of qh[l] belongs to weight l of sub-block s.
    n = b["qs"].shape[0]
    sc, m = scale_min_k4(b["scales"])
    qs = b["qs"].reshape(n, 4, 1, 32)
    low = (qs >> np.array([0, 4], np.uint8).reshape(1, 1, 2, 1)) & 15
    high = (b["qh"].reshape(n, 1, 32) >> np.arange(8, dtype=np.uint8).reshape(1, 8, 1)) & 1
    q = (low.reshape(n, 8, 32) | (high << 4)).astype(np.float32)
    return (_k_sub(b["d"], sc) * q - _k_sub(b["dmin"], m)).reshape(n, QK_K)


def decode_q6_k(b: dict[str, np.ndarray]) -> np.ndarray:
    # Two halves of 128 weights. In half h, for l in 0..31 and k in 0..3 the weight 32k + l is
    #   low 4 bits: ql[64h + l + 32*(k & 1)] nibble (k >> 1)     high 2 bits: qh[32h + l] crumb k
    # and sub-block (16 weights) scale scales[8h + 2k + l // 16].
    n = b["ql"].shape[0]
    ql = b["ql"].reshape(n, 2, 2, 32)  # (n, half, k & 1, l)
    low = np.stack([ql[:, :, 0] & 15, ql[:, :, 1] & 15, ql[:, :, 0] >> 4, ql[:, :, 1] >> 4], 2)
    qh = b["qh"].reshape(n, 2, 1, 32)
    high = (qh >> np.array([0, 2, 4, 6], np.uint8).reshape(1, 1, 4, 1)) & 3  # (n, 2, 4, 32)
    q = (low | (high << 4)).astype(np.int8) - np.int8(32)  # (n, 2, 4, 32)
    dl = _k_sub(b["d"], b["scales"])  # (n, 16, 1)
    return (dl * q.reshape(n, 16, 16).astype(np.float32)).reshape(n, QK_K)


def decode_q8_k(b: dict[str, np.ndarray]) -> np.ndarray:
    return b["d"].astype(np.float32) * b["qs"].astype(np.float32)


DECODERS: dict[T, Callable[[dict[str, np.ndarray]], np.ndarray]] = {
    T.F32: decode_f32,
    T.F16: decode_f16,
    T.BF16: decode_bf16,
    T.Q4_0: decode_q4_0,
    T.Q4_1: decode_q4_1,
    T.Q5_0: decode_q5_0,
    T.Q5_1: decode_q5_1,
    T.Q8_0: decode_q8_0,
    T.Q2_K: decode_q2_k,
    T.Q3_K: decode_q3_k,
    T.Q4_K: decode_q4_k,
    T.Q5_K: decode_q5_k,
    T.Q6_K: decode_q6_k,
    T.Q8_K: decode_q8_k,
}


def dequantize(qtype: T | int, raw: np.ndarray) -> np.ndarray:
    """Raw blocks (uint8, any shape whose bytes are whole blocks) -> float32 (n_elems,)."""
    lay = layout(qtype)
    data = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
    if data.size % lay.block_bytes:
        raise ValueError(
            f"{lay.name}: {data.size} bytes is not a whole number of {lay.block_bytes}-byte blocks"
        )
    return DECODERS[lay.qtype](split_fields(lay.qtype, data)).reshape(-1)
