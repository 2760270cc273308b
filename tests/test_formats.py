"""Block formats: the layout table and the numpy reference decoders.

Oracles: gguf.quants.dequantize (bit-exact, random valid blocks of every format it decodes) and
hand-worked blocks whose expected values are computed by hand below, from the block layout.
"""

from __future__ import annotations

import gguf
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from ggufref import formats


def random_valid_blocks(qtype: T, n: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, block_bytes): random codes, finite scale fields."""
    rng = np.random.default_rng(seed)
    lay = formats.layout(qtype)
    raw = rng.integers(0, 256, (n, lay.block_bytes), dtype=np.uint8)
    offs = lay.offsets()
    for f in lay.fields:
        o = offs[f.name]
        if f.dtype == "f2":
            raw[:, o : o + 2] = rng.uniform(-2, 2, (n, 1)).astype(np.float16).view(np.uint8)
        elif f.dtype == "f4":
            raw[:, o : o + 4] = rng.uniform(-2, 2, (n, 1)).astype(np.float32).view(np.uint8)
        elif f.dtype == "bf16":
            bits = rng.uniform(-2, 2, (n, 1)).astype(np.float32).view(np.uint32) >> 16
            raw[:, o : o + 2] = bits.astype(np.uint16).view(np.uint8)
    return raw


DECODABLE = [t for t in formats.LAYOUTS if t != T.Q8_K]  # gguf.quants has no Q8_K decoder


@pytest.mark.parametrize("qtype", DECODABLE, ids=lambda t: t.name.lower())
def test_decoder_is_bit_exact_with_gguf_quants(qtype: T) -> None:
    raw = random_valid_blocks(qtype, 97, seed=int(qtype))
    ours = formats.dequantize(qtype, raw)
    ref = gguf.quants.dequantize(raw, qtype).reshape(-1).astype(np.float32)
    assert ours.dtype == np.float32
    np.testing.assert_array_equal(ours.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("qtype", list(formats.LAYOUTS), ids=lambda t: t.name.lower())
def test_layout_sizes_agree_with_gguf_constants(qtype: T) -> None:
    lay = formats.layout(qtype)
    block, size = gguf.constants.GGML_QUANT_SIZES[qtype]
    assert (lay.block_elems, lay.block_bytes) == (block, size)
    offsets = list(lay.offsets().values())
    assert offsets == sorted(offsets) and offsets[0] == 0


def test_bits_per_weight_of_the_default_models_formats() -> None:
    assert formats.layout(T.Q4_K).bits_per_weight == 4.5  # (2 + 2 + 12 + 128) * 8 / 256
    assert formats.layout(T.Q6_K).bits_per_weight == 6.5625  # 210 * 8 / 256
    assert formats.layout(T.Q5_0).bits_per_weight == 5.5  # 22 * 8 / 32
    assert formats.layout(T.Q8_0).bits_per_weight == 8.5  # 34 * 8 / 32


def test_unknown_type_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unsupported ggml type IQ2_XXS"):
        formats.layout(T.IQ2_XXS)
    with pytest.raises(ValueError, match="whole number of 18-byte blocks"):
        formats.dequantize(T.Q4_0, np.zeros(19, np.uint8))


def _block(qtype: T, **fields: object) -> np.ndarray:
    """Build one block from named field values (everything else zero)."""
    lay = formats.layout(qtype)
    raw = np.zeros(lay.block_bytes, np.uint8)
    offs = lay.offsets()
    for name, value in fields.items():
        f = next(f for f in lay.fields if f.name == name)
        arr = np.asarray(value, dtype=np.dtype(f.dtype) if f.dtype != "bf16" else np.uint16)
        raw[offs[name] : offs[name] + arr.nbytes] = arr.reshape(-1).view(np.uint8)
    return raw


# --- hand-worked blocks: expected values computed by hand from the layout --------------------


def test_hand_worked_q4_0() -> None:
    qs = np.full(16, 0x88, np.uint8)  # every nibble 8 -> weight 0
    qs[0] = 0x9F  # low nibble 15 -> weight 0; high nibble 9 -> weight 16
    x = formats.dequantize(T.Q4_0, _block(T.Q4_0, d=np.float16(0.5), qs=qs))
    assert x[0] == 0.5 * (15 - 8) == 3.5
    assert x[16] == 0.5 * (9 - 8) == 0.5
    assert np.count_nonzero(x) == 2


def test_hand_worked_q4_1() -> None:
    qs = np.zeros(16, np.uint8)
    qs[1] = 0x3A  # weight 1 = 10, weight 17 = 3
    x = formats.dequantize(T.Q4_1, _block(T.Q4_1, d=np.float16(0.25), m=np.float16(-1), qs=qs))
    assert x[1] == 0.25 * 10 - 1 == 1.5
    assert x[17] == 0.25 * 3 - 1 == -0.25
    assert x[0] == -1.0  # code 0 -> m


def test_hand_worked_q5_0() -> None:
    qs = np.zeros(16, np.uint8)
    qs[2] = 0x01  # weight 2 low bits = 1
    qh = np.array([1 << 2], dtype="<u4")  # fifth bit of weight 2
    x = formats.dequantize(T.Q5_0, _block(T.Q5_0, d=np.float16(1.0), qh=qh.view(np.uint8), qs=qs))
    assert x[2] == 1.0 * ((1 | 16) - 16) == 1.0
    assert x[18] == 1.0 * (0 - 16) == -16.0  # no bits at all -> the most negative code


def test_hand_worked_q8_0() -> None:
    qs = np.zeros(32, np.int8)
    qs[5] = -8
    x = formats.dequantize(T.Q8_0, _block(T.Q8_0, d=np.float16(0.125), qs=qs))
    assert x[5] == -1.0 and np.count_nonzero(x) == 1


def test_hand_worked_bf16() -> None:
    x = formats.dequantize(T.BF16, np.array([0x3FC0], "<u2").view(np.uint8))
    assert x[0] == 1.5  # 0x3FC0 << 16 = 0x3FC00000 = 1.5f


def test_hand_worked_q2_k() -> None:
    scales = np.zeros(16, np.uint8)
    scales[0] = 0x21  # sub-block 0: scale 1 (low nibble), min 2 (high nibble)
    qs = np.zeros(64, np.uint8)
    qs[0] = 0b11  # crumb 0 of byte 0 -> weight 0 = 3
    x = formats.dequantize(
        T.Q2_K, _block(T.Q2_K, scales=scales, qs=qs, d=np.float16(1.0), dmin=np.float16(0.25))
    )
    assert x[0] == 1.0 * 1 * 3 - 0.25 * 2 == 2.5
    assert x[1] == -0.5  # code 0 -> -dmin * m
    assert x[16] == 0.0  # sub-block 1 has scale 0 and min 0


def test_hand_worked_q4_k_including_packed_high_scale_bits() -> None:
    scales = np.zeros(12, np.uint8)
    scales[0] = 3  # sc[0] = 3
    scales[4] = 2  # m[0] = 2
    scales[1] = 0x40  # sc[1] = 0, and its top two bits (01) are the high bits of sc[5]
    scales[5] = 0x80  # m[1] = 0, top bits (10) are the high bits of m[5]
    scales[9] = 0x21  # sc[5] low nibble 1, m[5] low nibble 2
    qs = np.zeros(128, np.uint8)
    qs[0] = 0x07  # chunk 0 low nibble: sub-block 0, weight 0 = 7
    qs[64] = 0x40  # chunk 2 high nibble: sub-block 5, weight 160 = 4
    x = formats.dequantize(
        T.Q4_K, _block(T.Q4_K, d=np.float16(1.0), dmin=np.float16(0.5), scales=scales, qs=qs)
    )
    sc5, m5 = 1 | (1 << 4), 2 | (2 << 4)  # 17 and 34
    assert x[0] == 1.0 * 3 * 7 - 0.5 * 2 == 20.0
    assert x[1] == -0.5 * 2 == -1.0
    assert x[160] == 1.0 * sc5 * 4 - 0.5 * m5 == 51.0
    assert x[161] == -0.5 * m5 == -17.0
    sc, m = formats.scale_min_k4(scales[None, :])
    assert sc[0].tolist() == [3, 0, 0, 0, 0, 17, 0, 0]
    assert m[0].tolist() == [2, 0, 0, 0, 0, 34, 0, 0]


def test_hand_worked_q6_k() -> None:
    ql = np.zeros(128, np.uint8)
    qh = np.zeros(64, np.uint8)
    ql[0], qh[0] = 0x05, 0b10  # weight 0: 5 | (2 << 4) = 37 -> 37 - 32 = 5
    scales = np.zeros(16, np.int8)
    scales[0], scales[2] = 2, -1
    x = formats.dequantize(T.Q6_K, _block(T.Q6_K, ql=ql, qh=qh, scales=scales, d=np.float16(0.5)))
    assert x[0] == 0.5 * 2 * 5 == 5.0
    assert x[1] == 0.5 * 2 * -32 == -32.0  # sub-block 0, code 0
    assert x[32] == 0.5 * -1 * -32 == 16.0  # sub-block 2 (scale -1), code 0
    assert x[16] == 0.0  # sub-block 1: scale 0


def test_hand_worked_q8_k() -> None:
    qs = np.zeros(256, np.int8)
    qs[255] = 100
    x = formats.dequantize(T.Q8_K, _block(T.Q8_K, d=np.float32(0.01), qs=qs))
    assert x[255] == np.float32(0.01) * np.float32(100)
