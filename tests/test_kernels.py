"""The native linear kernels against gguf.quants, and the SIMD kernels against the scalar ones.

Oracle: ``y_ref = x @ gguf.quants.dequantize(raw, qtype).T`` in float64.

Why y differs from y_ref, and by how much at most (the bound every comparison uses):

1. **8-bit activations.** Each activation block b (32 elements for the legacy formats, 256 for
   the K-quants) is stored as q * D with d_b = max|x| / 127 and |q| <= 127.
   Rounding q costs at most d_b / 2 per element; D differs from d_b by the storage of the scale:
   half precision for the legacy formats (relative error <= 2^-11, so 127 * |D - d_b| <=
   127 * 2^-11 * d_b), float32 for Q8_K (127 * 2^-20 * d_b covers 1 / (-127 / max)).
   So |x_j - x^_j| <= e_b = d_b * (1/2 + 127 * rel_b), and |sum_j w_j (x_j - x^_j)| <=
   sum_b e_b * sum_{j in b} |w_j|.   F32 weights see the float x: e_j = 0; F16 and BF16 weights
   see x rounded to half / bfloat16 (as in ggml): e_j = 2^-11 |x_j| (+ 2^-25) / 2^-8 |x_j|.
2. **float32 arithmetic.** Block scales are applied in float32 and partial sums are added in
   float32 (the SIMD kernels in a different order than the scalar ones; the integer sums inside a
   block are exact in every kernel). gguf's decoder also rounds d * sc * q to float32. Recursive
   summation of m terms errs by at most (m - 1) * 2^-24 * sum|terms|; with m <= cols / 8 + 8
   the bound adds gamma * sum_j |w_j| (|x_j| + e_b), gamma = (cols / 8 + 8) * 2^-24.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf.quants as gq
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from ggufref import formats, kernels
from ggufref.testing.weights import random_weight
from ggufref.weights import QuantTensor

FLOAT_TYPES = (T.F32, T.F16, T.BF16)
LEGACY_TYPES = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0)
K_TYPES = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)
ALL_TYPES = FLOAT_TYPES + LEGACY_TYPES + K_TYPES
ISAS = kernels.ISA_NAMES[: kernels.ISA_NAMES.index(kernels.best_isa()) + 1]


# ---------------------------------------------------------------- random valid blocks
def dequantized(w: QuantTensor) -> np.ndarray:
    """float64 (rows, cols) from gguf's own decoder (the oracle, not ours)."""
    return gq.dequantize(w.data, w.qtype).reshape(w.shape).astype(np.float64)


# ---------------------------------------------------------------- the error bound
def activation_error(qtype: T, x: np.ndarray) -> np.ndarray:
    """e (T, cols): the per-element bound on |x - x^| from the docstring, item 1."""
    if qtype == T.F16:
        return np.abs(x.astype(np.float64)) * 2.0**-11 + 2.0**-25
    if qtype == T.BF16:
        return np.abs(x.astype(np.float64)) * 2.0**-8
    if qtype == T.F32:
        return np.zeros_like(x, dtype=np.float64)
    block = 32 if qtype in LEGACY_TYPES else 256
    rel = 2.0**-11 if qtype in LEGACY_TYPES else 2.0**-20
    xb = np.abs(x.astype(np.float64)).reshape(x.shape[0], -1, block)
    d = xb.max(axis=2, keepdims=True) / 127
    e = d * (0.5 + 127 * rel) + 127 * 2.0**-25  # + half's subnormal spacing, for tiny blocks
    return np.broadcast_to(e, xb.shape).reshape(x.shape)


def error_bound(qtype: T, x: np.ndarray, wd: np.ndarray) -> np.ndarray:
    """(T, rows): sum_j |w_j| e_j + gamma * sum_j |w_j| (|x_j| + e_j), docstring items 1 and 2."""
    e = activation_error(qtype, x)
    aw = np.abs(wd)
    gamma = (wd.shape[1] / 8 + 8) * 2.0**-24
    return e @ aw.T + gamma * ((np.abs(x) + e) @ aw.T) + 1e-30


def assert_within_bound(qtype: T, x2: np.ndarray, w: QuantTensor, y: np.ndarray) -> None:
    wd = dequantized(w)
    ref = x2.astype(np.float64) @ wd.T
    bound = error_bound(qtype, x2, wd)
    err = np.abs(y.reshape(ref.shape) - ref)
    worst = np.unravel_index(np.argmax(err / bound), err.shape)
    assert (err <= bound).all(), (
        f"{qtype.name} {w.shape}: |y - ref| = {err[worst]:.3g} > bound {bound[worst]:.3g} "
        f"at {worst}"
    )


# ---------------------------------------------------------------- linear vs gguf.quants
# (rows, blocks per row, n_tokens or None for a 1-D x): one row, one block per row, rows that
# do not divide among threads, many tokens, a single token.
SHAPES = [(1, 1, None), (7, 2, 1), (33, 3, 17), (257, 2, None), (64, 5, 64)]


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"r{s[0]}b{s[1]}t{s[2]}")
def test_linear_matches_dequantized(qtype: T, shape: tuple[int, int, int | None]) -> None:
    rows, blocks, n_tokens = shape
    rng = np.random.default_rng([int(qtype), rows, blocks])
    cols = blocks * (32 if qtype in FLOAT_TYPES + LEGACY_TYPES else 256)
    w = random_weight(qtype, rows, cols, rng)
    x = rng.standard_normal((n_tokens or 1, cols)).astype(np.float32)
    xin = x[0] if n_tokens is None else x
    for isa in ISAS:
        y = kernels.linear(xin, w, isa=isa)
        assert y.shape == ((rows,) if n_tokens is None else (n_tokens, rows))
        assert y.dtype == np.float32
        assert_within_bound(qtype, x, w, y)


@pytest.mark.parametrize("qtype", LEGACY_TYPES, ids=lambda t: t.name)
def test_linear_on_gguf_quantized_weights(qtype: T) -> None:
    """Blocks made by gguf's own quantizer from real-valued weights, not random bytes."""
    rng = np.random.default_rng(int(qtype))
    wf = rng.standard_normal((45, 320)).astype(np.float32)
    raw = gq.quantize(wf, qtype)
    w = QuantTensor(qtype, (45, 320), raw)
    x = rng.standard_normal((9, 320)).astype(np.float32)
    assert_within_bound(qtype, x, w, kernels.linear(x, w))


# ---------------------------------------------------------------- SIMD vs scalar
@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_simd_matches_scalar(qtype: T) -> None:
    """Same integer sums, float terms added in another order: within gamma * sum |w x^|."""
    rng = np.random.default_rng(100 + int(qtype))
    cols = 1024 if qtype in K_TYPES else 320
    w = random_weight(qtype, 19, cols, rng)
    x = rng.standard_normal((3, cols)).astype(np.float32)
    y_ref = kernels.linear(x, w, isa="scalar")
    wd = np.abs(dequantized(w))
    gamma = (cols / 8 + 8) * 2.0**-24
    tol = 2 * gamma * ((np.abs(x) + activation_error(qtype, x)) @ wd.T)
    for isa in ISAS[1:]:
        diff = np.abs(kernels.linear(x, w, isa=isa) - y_ref)
        assert (diff <= tol).all(), f"{qtype.name} {isa}: max diff {diff.max():.3g}"


# Q4_K and Q6_K at AVX-512 are left out of the two batch-invariance tests below: they follow
# llama.cpp, whose prefill kernels for them (repacked Q4_K in 4-token groups; tiled Q6_K from 8
# tokens on) round differently from its one-token kernels (the tests
# test_q4_K_adds_in_llama_cpp_repacked_order and test_q6_K_prefill_adds_in_llama_cpp_tiled_order
# check both orders exactly).
def batch_invariant(qtype: T, isa: str) -> bool:
    return not (qtype in (T.Q4_K, T.Q6_K) and isa == "avx512")


@pytest.mark.parametrize("n_tokens", [8, 9, 16, 37])
@pytest.mark.parametrize("qtype", [T.Q5_0, T.Q8_0, T.Q4_K, T.Q6_K], ids=lambda t: t.name)
def test_prefill_tiles_match_tokens_one_by_one(qtype: T, n_tokens: int) -> None:
    """Prefill kernels (8 tokens per weight decode; Q5_0 through 8-token panels on AVX-512, Q4_K
    through 16-row tiles) at token counts around the tile size, rows not a multiple of the row
    tile, both threads busy: each token's output is bit for bit what the token gives alone
    (Q4_K at AVX-512: what llama.cpp's order gives)."""
    rng = np.random.default_rng(300 + int(qtype) + n_tokens)
    cols = 512 if qtype in K_TYPES else 160
    w = random_weight(qtype, 70, cols, rng)
    x = (rng.standard_normal((n_tokens, cols)) * rng.uniform(0.1, 4, (n_tokens, 1))).astype(
        np.float32
    )
    batch = kernels.linear(x, w)
    if batch_invariant(qtype, kernels.current_isa()):
        expected = np.stack([kernels.linear(row, w) for row in x])
    elif qtype == T.Q4_K:
        expected = ggml_q4_K_repacked(w, x)
    else:
        expected = ggml_q6_K_tiled(w, x)
    np.testing.assert_array_equal(batch, expected, err_msg=qtype.name)
    y_ref = dequantized(w)
    assert np.allclose(batch, x @ y_ref.T, rtol=0.05, atol=0.05 * np.abs(x).sum(1).max())


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_tokens_in_a_batch_match_tokens_one_by_one(qtype: T) -> None:
    """Prefill decodes each weight block once for several tokens (csrc: GGR_NT); every token
    still goes through the same operations as a lone token, so results are bit-identical."""
    rng = np.random.default_rng(200 + int(qtype))
    cols = 512 if qtype in K_TYPES else 96
    w = random_weight(qtype, 21, cols, rng)
    x = rng.standard_normal((11, cols)).astype(np.float32)
    for isa in filter(lambda isa: batch_invariant(qtype, isa), ISAS):
        batch = kernels.linear(x, w, isa=isa)
        one_by_one = np.stack([kernels.linear(row, w, isa=isa) for row in x])
        np.testing.assert_array_equal(batch, one_by_one, err_msg=f"{qtype.name} {isa}")


# ---------------------------------------------------------------- exact activation quantization
def test_q8_0_activations_are_ggml_q8_0() -> None:
    """One-hot Q8_0 rows with d = 1 read back x^ = D * q exactly: D = half(amax / 127),
    q = round-half-even(x * (127 / amax)) in float32, as ggml's x86 quantizer does."""
    cols = 64
    blocks = np.zeros((cols, cols // 32, 34), dtype=np.uint8)
    blocks[:, :, 0:2] = np.array([1.0], dtype=np.float16).view(np.uint8)
    for r in range(cols):
        blocks[r, r // 32, 2 + r % 32] = 1
    w = QuantTensor(T.Q8_0, (cols, cols), blocks.reshape(cols, -1))
    x = np.random.default_rng(7).standard_normal(cols).astype(np.float32)
    x[:4] = [127.0, 2.5, -3.5, 0.5]  # scale 1 and exact ties: 2, -4, 0 (half to even)
    xb = x.reshape(-1, 32)
    amax = np.abs(xb).max(axis=1, keepdims=True)
    q = np.rint(xb * (np.float32(127) / amax))
    d = (amax / np.float32(127)).astype(np.float16).astype(np.float32)
    expected = (d * q).reshape(-1)
    for isa in ISAS:
        np.testing.assert_array_equal(kernels.linear(x, w, isa=isa), expected)


def test_q8_K_activations_are_ggml_q8_K() -> None:
    """One-hot Q4_K rows (d = 1, every scale 1, mins 0): x^ = D * q with ggml's Q8_K rule:
    the element of largest |x| maps to -127, q = min(127, round-half-even(-127 / max * x)),
    D = 1 / (-127 / max)."""
    cols = 256
    block = np.zeros((cols, 144), dtype=np.uint8)
    block[:, 0:2] = np.array([1.0], dtype=np.float16).view(np.uint8)  # d = 1, dmin = 0
    block[:, 4:16] = [1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1]  # sc = 1, mn = 0 for all 8
    for e in range(cols):  # element e: chunk e // 64, low or high nibble of qs[32c + e % 32]
        c, rest = divmod(e, 64)
        block[e, 16 + 32 * c + rest % 32] = 1 if rest < 32 else 0x10
    w = QuantTensor(T.Q4_K, (cols, cols), block)
    x = np.random.default_rng(8).standard_normal(cols).astype(np.float32)
    x[:5] = [-127.0, 2.5, -3.5, 0.5, 127.0]  # the first |x| = 127 is negative: scale +1; ties
    mx = x[np.argmax(np.abs(x))]
    iscale = np.float32(-127) / mx
    q = np.minimum(127, np.rint(iscale * x))
    expected = (np.float32(1) / iscale) * q
    for isa in ISAS:
        np.testing.assert_array_equal(kernels.linear(x, w, isa=isa), expected)


def q8_1_reference(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ggml's Q8_1 rule, written out: per 32 values d = amax / 127 (float32), q =
    round-half-even(x * (127 / amax)), D = half(d), s = half(d * sum(q)) from the unrounded d."""
    xb = x.reshape(-1, 32)
    amax = np.abs(xb).max(axis=1)
    d = amax / np.float32(127)
    q = np.rint(xb * (np.float32(127) / amax)[:, None])
    s = (d * q.sum(axis=1).astype(np.float32)).astype(np.float16).astype(np.float32)
    return d.astype(np.float16).astype(np.float32), q, s


@pytest.mark.parametrize("qtype", [T.Q4_1, T.Q5_1], ids=lambda t: t.name)
def test_q8_1_activations_are_ggml_q8_1(qtype: T) -> None:
    """Row b has d = 0 and m = 1 in block b only, so y_b = m * s_b = s_b exactly: ggml's
    s = half(d * sum(q)) with the unrounded d. The rule this replaced, D * sum(q) with the
    half-precision D, gives other values for these blocks (checked, so the test can fail)."""
    lay = formats.layout(qtype)
    nb = 4
    blocks = np.zeros((nb, nb, lay.block_bytes), dtype=np.uint8)
    m_at = lay.offsets()["m"]
    for b in range(nb):
        blocks[b, b, m_at : m_at + 2] = np.array([1.0], dtype=np.float16).view(np.uint8)
    w = QuantTensor(qtype, (nb, 32 * nb), blocks.reshape(nb, -1))
    x = np.random.default_rng(11).standard_normal(32 * nb).astype(np.float32)
    d, q, s = q8_1_reference(x)
    old_rule = d * q.sum(axis=1)
    assert (old_rule != s).any()
    for isa in ISAS:
        np.testing.assert_array_equal(kernels.linear(x, w, isa=isa), s, err_msg=isa)


def test_q4_1_one_hot_reads_q8_1_quants() -> None:
    """One-hot Q4_1 rows (d = 1, m = 0, one quant = 1): y_e = D * q_e, the Q8_1 quants."""
    cols = 64
    blocks = np.zeros((cols, cols // 32, 20), dtype=np.uint8)
    blocks[:, :, 0:2] = np.array([1.0], dtype=np.float16).view(np.uint8)
    for e in range(cols):
        j = e % 32
        blocks[e, e // 32, 4 + j % 16] = 1 if j < 16 else 0x10
    w = QuantTensor(T.Q4_1, (cols, cols), blocks.reshape(cols, -1))
    x = np.random.default_rng(12).standard_normal(cols).astype(np.float32)
    x[:4] = [127.0, 2.5, -3.5, 0.5]  # ties round half to even
    d, q, _ = q8_1_reference(x)
    for isa in ISAS:
        np.testing.assert_array_equal(kernels.linear(x, w, isa=isa), (d[:, None] * q).reshape(-1))


def identity_weight(qtype: T, n: int) -> QuantTensor:
    eye = np.eye(n, dtype=np.float32)
    raw = (
        eye.astype(np.float16).view(np.uint8)
        if qtype == T.F16
        else ((eye.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8))
    )
    return QuantTensor(qtype, (n, n), np.ascontiguousarray(raw).reshape(n, -1))


def test_f16_weights_see_half_precision_activations() -> None:
    """ggml converts the activations of an F16 matmul to half (round to nearest even):
    an identity F16 weight returns half(x), ties included, subnormal halves too."""
    x = np.random.default_rng(13).standard_normal(64).astype(np.float32)
    x[:6] = [1 + 2.0**-11, 1 + 3 * 2.0**-11, -(2 + 2.0**-10), 3e-6, 65504.0, 1 / 3]
    expected = np.array([1.0, 1 + 2.0**-9, -2.0, 2.0**-24 * 50, 65504.0], dtype=np.float32)
    w = identity_weight(T.F16, 64)
    for isa in ISAS:
        y = kernels.linear(x, w, isa=isa)
        np.testing.assert_array_equal(y, x.astype(np.float16).astype(np.float32), err_msg=isa)
        np.testing.assert_array_equal(y[:5], expected)


def test_bf16_weights_see_bfloat16_activations() -> None:
    """... and to bfloat16 for BF16 weights: the top 16 bits, rounded to nearest even."""
    x = np.random.default_rng(14).standard_normal(64).astype(np.float32)
    x[:4] = [1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8 + 2.0**-20), 1 / 3]
    expected = np.array([1.0, 1 + 2.0**-6, -(1 + 2.0**-7), 0.333984375], dtype=np.float32)
    bits = x.view(np.uint32).astype(np.uint64)
    rne = (((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16).astype(np.uint32).view(np.float32)
    w = identity_weight(T.BF16, 64)
    for isa in ISAS:
        y = kernels.linear(x, w, isa=isa)
        np.testing.assert_array_equal(y, rne, err_msg=isa)
        np.testing.assert_array_equal(y[:4], expected)


def hsum8(v: np.ndarray) -> np.ndarray:
    """(..., 8) float32 -> (...): lanes l + l+4, then (0 + 2) + (1 + 3), as ggml's hsum_float_8."""
    h = v[..., 4:] + v[..., :4]
    return (h[..., 0] + h[..., 2]) + (h[..., 1] + h[..., 3])


def ggml_legacy_dot(qtype: T, w: QuantTensor, x: np.ndarray) -> np.ndarray:
    """ggml's x86 Q4_0 / Q5_0 / Q8_0 dot, one float rounding at a time: per block, 8 int32
    lanes of 4 products (q - offset) * qx; acc = fma(D_w * D_x, lane, acc) block after block;
    then hsum8. (The fma is exact in float64 here: lanes and scales are small.)"""
    d_x, q_x = q8_blocks(x)  # (T, nb), (T, nb, 32)
    nb = w.shape[1] // 32
    d_w = w.data.reshape(w.shape[0], nb, -1)[:, :, 0:2].copy().view(np.float16)[..., 0]
    q_w = np.rint(dequantized(w).reshape(w.shape[0], nb, 32) / d_w.astype(np.float64)[..., None])
    prod = q_x[:, None, :, :] * q_w[None, :, :, :]  # (T, rows, nb, 32)
    lanes = prod.reshape(*prod.shape[:3], 8, 4).sum(-1)  # (T, rows, nb, 8)
    d = d_w.astype(np.float32)[None, :, :] * d_x[:, None, :]  # (T, rows, nb) float32
    acc = np.zeros(lanes.shape[:2] + (8,), dtype=np.float32)
    for b in range(nb):
        acc = (d[:, :, b, None].astype(np.float64) * lanes[:, :, b] + acc).astype(np.float32)
    return hsum8(acc)


def q8_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's Q8_0 activation blocks: D (T, nb) float32 (half-rounded), q (T, nb, 32)."""
    xb = x.reshape(x.shape[0], -1, 32)
    amax = np.abs(xb).max(axis=-1)
    q = np.rint(xb * (np.float32(127) / amax)[..., None])
    return (amax / np.float32(127)).astype(np.float16).astype(np.float32), q


def q8_K_blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ggml's Q8_K activation blocks: D (T, nb) float32, q (T, nb, 256) (the rule of
    test_q8_K_activations_are_ggml_q8_K)."""
    xb = x.reshape(x.shape[0], -1, 256)
    mx = np.take_along_axis(xb, np.abs(xb).argmax(axis=-1)[..., None], axis=-1)[..., 0]
    iscale = np.float32(-127) / mx
    q = np.minimum(127, np.rint(iscale[..., None] * xb))
    return np.float32(1) / iscale, q


def q4_K_parts(w: QuantTensor) -> tuple[np.ndarray, ...]:
    """Q4_K bytes read by the block layout (d, dmin, 12 scale bytes, 128 nibble bytes), not by
    any decoder of ours: d, dmin (rows, nb) float32, sc, mn (rows, nb, 8), q (rows, nb, 256)."""
    blk = w.data.reshape(w.shape[0], -1, 144)
    d = blk[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    dmin = blk[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    s12 = blk[..., 4:16].astype(np.int64)
    sc = np.concatenate([s12[..., 0:4] & 63, (s12[..., 8:12] & 15) | (s12[..., 0:4] >> 6) << 4], -1)
    mn = np.concatenate([s12[..., 4:8] & 63, (s12[..., 8:12] >> 4) | (s12[..., 4:8] >> 6) << 4], -1)
    qs = blk[..., 16:].reshape(*blk.shape[:2], 4, 32).astype(np.int64)  # 4 chunks of 64
    q = np.stack([qs & 15, qs >> 4], axis=3).reshape(*blk.shape[:2], 256)
    return d, dmin, sc, mn, q


def ggml_q4_K_repacked(w: QuantTensor, x: np.ndarray) -> np.ndarray:
    """llama.cpp's Q4_K result on x86 (weights repacked 8 rows at a time), one float rounding
    at a time, as read in ggml-cpu/arch/x86/repack.cpp: exact integer sums, then two float
    chains acc = fma(float(isum), d_w * d_x, acc) and accm = fma(float(imin), dmin_w * d_x,
    accm), result acc - accm. Tokens in whole groups of 4 (when there are 4 or more) add per
    64 elements (ggml_gemm_q4_K_8x8_q8_K); the rest per super-block (ggml_gemv_q4_K_8x8_q8_K).
    The fma is one float64 operation rounded to float32 (the product of two float32 is exact)."""
    d, dmin, sc, mn, q = q4_K_parts(w)
    dx, qx = q8_K_blocks(x)  # (T, nb), (T, nb, 256)
    n_tok, nb = dx.shape
    sub = (q[None] * qx[:, None]).reshape(n_tok, w.shape[0], nb, 8, 32).sum(-1)  # (T, R, nb, 8)
    bsum = qx.reshape(n_tok, nb, 8, 32).sum(-1)[:, None]  # (T, 1, nb, 8)
    isum = (sc[None] * sub).reshape(n_tok, w.shape[0], nb, 4, 2).sum(-1)  # per 64: (T, R, nb, 4)
    imin = (mn[None] * bsum).reshape(n_tok, w.shape[0], nb, 4, 2).sum(-1)
    grouped = n_tok // 4 * 4 if n_tok >= 4 else 0
    out = np.zeros((n_tok, w.shape[0]), dtype=np.float32)
    for t in range(n_tok):
        acc = np.zeros(w.shape[0], dtype=np.float32)
        accm = np.zeros(w.shape[0], dtype=np.float32)
        for b in range(nb):
            dwdx = d[:, b] * dx[t, b]
            dmdx = dmin[:, b] * dx[t, b]
            parts = range(4) if t < grouped else [slice(None)]
            for p in parts:
                i = isum[t, :, b, p].reshape(w.shape[0], -1).sum(-1).astype(np.float32)
                m = imin[t, :, b, p].reshape(w.shape[0], -1).sum(-1).astype(np.float32)
                acc = (i.astype(np.float64) * dwdx + acc).astype(np.float32)
                accm = (m.astype(np.float64) * dmdx + accm).astype(np.float32)
        out[t] = acc - accm
    return out


def q6_K_parts(w: QuantTensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Q6_K bytes read by the block layout (ql 128, qh 64, int8 scales 16, half d):
    d (rows, nb) float32, sc (rows, nb, 16), q (rows, nb, 256) in -32..31."""
    blk = w.data.reshape(w.shape[0], -1, 210)
    ql, qh = blk[..., :128].astype(np.int64), blk[..., 128:192].astype(np.int64)
    sc = blk[..., 192:208].view(np.int8).astype(np.int64)
    d = blk[..., 208:210].copy().view(np.float16)[..., 0].astype(np.float32)
    q = np.empty(blk.shape[:2] + (256,), dtype=np.int64)
    for h in range(2):
        lo, hi = ql[..., 64 * h : 64 * h + 32], ql[..., 64 * h + 32 : 64 * h + 64]
        bits = qh[..., 32 * h : 32 * h + 32]
        for j, (nib, shift) in enumerate([(lo & 15, 0), (hi & 15, 2), (lo >> 4, 4), (hi >> 4, 6)]):
            q[..., 128 * h + 32 * j : 128 * h + 32 * j + 32] = (
                nib | ((bits >> shift) & 3) << 4
            ) - 32
    return d, sc, q


def ggml_q6_K_tiled(w: QuantTensor, x: np.ndarray) -> np.ndarray:
    """llama.cpp's Q6_K result for 8 or more tokens (ggml-cpu/tiled, AVX-512 VNNI), as read in
    tiled-kernel.cpp: per super-block the exact isum = sum_s sc_s (q . x)_s, then
    acc = fma(float(isum) * d_w, d_x, acc) (the source's mul + add, fused by the compiler of
    llama.cpp's build: that is what its outputs show)."""
    d, sc, q = q6_K_parts(w)
    dx, qx = q8_K_blocks(x)
    n_tok, nb = dx.shape
    sub = (q[None] * qx[:, None]).reshape(n_tok, w.shape[0], nb, 16, 16).sum(-1)
    isum = (sc[None] * sub).sum(-1).astype(np.float32)  # (T, R, nb)
    acc = np.zeros((n_tok, w.shape[0]), dtype=np.float32)
    for b in range(nb):
        prod = (isum[:, :, b] * d[None, :, b]).astype(np.float64)
        acc = (prod * dx[:, None, b].astype(np.float64) + acc).astype(np.float32)
    return acc


@pytest.mark.skipif(kernels.best_isa() != "avx512", reason="llama.cpp's Q4_K order: AVX-512 only")
@pytest.mark.parametrize("cols", [256, 35 * 256, 64 * 256, 65 * 256])
@pytest.mark.parametrize("rows", [19, 301])
def test_q4_K_decode_rows_of_every_length(cols: int, rows: int) -> None:
    """Decode takes up to 8 rows per call (the kernel's 8-row loop, then pairs, then a single
    row) and rearranges the activations once per call (on the stack, up to 64 blocks; longer
    rows take the one-row kernel): the same bits either way. 301 rows give the threads tiles of
    18 rows (8 + 8 + 2); 19 rows, tiles of one."""
    rng = np.random.default_rng(600 + cols // 256)
    w = random_weight(T.Q4_K, rows, cols, rng)
    x = (rng.standard_normal((1, cols)) * 3).astype(np.float32)
    np.testing.assert_array_equal(kernels.linear(x, w, isa="avx512"), ggml_q4_K_repacked(w, x))


@pytest.mark.skipif(kernels.best_isa() != "avx512", reason="llama.cpp's Q6_K order: AVX-512 only")
@pytest.mark.parametrize("n_tokens", [8, 9, 13, 20])
def test_q6_K_prefill_adds_in_llama_cpp_tiled_order(n_tokens: int) -> None:
    """From 8 tokens on, the AVX-512 Q6_K kernel rounds exactly where llama.cpp's tiled kernel
    does; below 8 tokens, as its one-token kernel (ggml_vec_dot_q6_K_q8_K) does."""
    rng = np.random.default_rng(500 + n_tokens)
    w = random_weight(T.Q6_K, 37, 768, rng)
    x = (rng.standard_normal((n_tokens, 768)) * rng.uniform(0.01, 50, (n_tokens, 1))).astype(
        np.float32
    )
    expected = ggml_q6_K_tiled(w, x)
    np.testing.assert_array_equal(kernels.linear(x, w, isa="avx512"), expected)
    one_by_one = np.stack([kernels.linear(row, w, isa="avx512") for row in x])
    assert (one_by_one != expected).any()  # the two orders differ on these rows


@pytest.mark.skipif(kernels.best_isa() != "avx512", reason="llama.cpp's Q4_K order: AVX-512 only")
@pytest.mark.parametrize("n_tokens", [1, 3, 4, 7, 8, 13])
def test_q4_K_adds_in_llama_cpp_repacked_order(n_tokens: int) -> None:
    """The AVX-512 Q4_K kernels round exactly where llama.cpp's repacked ones do: per 64
    elements for 4-token groups (prefill), per super-block for the rest and for decode. Rows
    not a multiple of the 16-row tile; scales, mins and activations span their ranges."""
    rng = np.random.default_rng(400 + n_tokens)
    w = random_weight(T.Q4_K, 37, 768, rng)
    x = (rng.standard_normal((n_tokens, 768)) * rng.uniform(0.01, 50, (n_tokens, 1))).astype(
        np.float32
    )
    expected = ggml_q4_K_repacked(w, x)
    np.testing.assert_array_equal(kernels.linear(x, w, isa="avx512"), expected)
    # the two orders really differ (so the test can tell them apart)
    if n_tokens >= 4:
        per_block = np.stack([ggml_q4_K_repacked(w, x[t : t + 1])[0] for t in range(n_tokens)])
        assert (per_block != expected).any()


@pytest.mark.parametrize("qtype", [T.Q4_0, T.Q5_0, T.Q8_0], ids=lambda t: t.name)
def test_simd_legacy_dots_add_in_ggml_order(qtype: T) -> None:
    """The SIMD Q4_0 / Q5_0 / Q8_0 kernels round exactly where ggml's do (so llama.cpp's
    outputs are reproduced bit for bit); the scalar reference adds in another order."""
    rng = np.random.default_rng(300 + int(qtype))
    w = random_weight(qtype, 37, 320, rng)
    x = rng.standard_normal((5, 320)).astype(np.float32)
    expected = ggml_legacy_dot(qtype, w, x)
    for isa in ISAS[1:]:
        np.testing.assert_array_equal(kernels.linear(x, w, isa=isa), expected, err_msg=isa)
        np.testing.assert_array_equal(kernels.linear(x[2], w, isa=isa), expected[2])
    assert (kernels.linear(x, w, isa="scalar") != expected).any()


# ---------------------------------------------------------------- threads and ISA control
def test_thread_count_does_not_change_results() -> None:
    """Each output is one dot call whatever the split, so results are bit-identical."""
    rng = np.random.default_rng(3)
    w = random_weight(T.Q4_K, 301, 512, rng)
    x = rng.standard_normal((13, 512)).astype(np.float32)
    before = kernels.get_threads()
    try:
        assert kernels.set_threads(1) == 1
        y1 = kernels.linear(x, w)
        assert kernels.set_threads(3) == 3
        y3 = kernels.linear(x, w)
    finally:
        kernels.set_threads(before)
    np.testing.assert_array_equal(y1, y3)


def _linux_cpu_flags() -> set[str] | None:
    """The CPU flags the Linux kernel reports; it leaves out features whose register state the
    OS does not enable, so this is an oracle independent of our CPUID/XGETBV code."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return None


def test_cpu_features_and_force_isa() -> None:
    feats = kernels.cpu_features()
    assert set(feats) >= {"avx2", "avx512", "vnni"}
    assert all(isinstance(v, bool) for v in feats.values())
    flags = _linux_cpu_flags()
    if flags is not None:  # Linux: what the kernel says the CPU and OS both support
        avx2 = {"avx2", "fma", "f16c"} <= flags
        avx512 = avx2 and {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags
        expected = "avx512" if avx512 else "avx2" if avx2 else "scalar"
        assert kernels.best_isa() == expected, sorted(f for f in flags if "avx" in f)
    try:
        kernels.force_isa("scalar")
        assert kernels.current_isa() == "scalar"
    finally:
        kernels.force_isa(None)
    assert kernels.current_isa() == kernels.best_isa()
    with pytest.raises(ValueError, match="isa must be one of"):
        kernels.force_isa("sse9")


def test_out_parameter_is_filled() -> None:
    rng = np.random.default_rng(4)
    w = random_weight(T.Q8_0, 10, 64, rng)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    out = np.full((2, 10), np.nan, dtype=np.float32)
    assert kernels.linear(x, w, out=out) is out
    np.testing.assert_array_equal(out, kernels.linear(x, w))


# ---------------------------------------------------------------- several weights, one input
@pytest.mark.parametrize("n_tokens", [1, 2, 3, 4, 8, 9])
@pytest.mark.parametrize("isa", ISAS)
def test_linear_many_is_linear_per_weight(n_tokens: int, isa: str) -> None:
    """linear_many(x, Ws) gives each weight's linear(x, W) bit for bit: mixed formats (two
    activation types, weights with and without several-rows and prefill kernels), row counts
    that are not a multiple of any tile, token counts on both sides of every prefill kernel's
    threshold, every instruction set."""
    rng = np.random.default_rng(11)
    cols = 512
    ws = (
        random_weight(T.Q4_K, 301, cols, rng),
        random_weight(T.Q6_K, 37, cols, rng),
        random_weight(T.Q8_0, 70, cols, rng),
        random_weight(T.Q5_0, 9, cols, rng),
        random_weight(T.F16, 5, cols, rng),
        random_weight(T.Q4_K, 3, cols, rng),
    )
    x = rng.standard_normal((n_tokens, cols)).astype(np.float32)
    try:
        kernels.force_isa(isa)
        got = kernels.linear_many(x, ws)
        expected = [kernels.linear(x, w) for w in ws]
        got_1d = kernels.linear_many(x[0], ws[:2])
        expected_1d = [kernels.linear(x[0], w) for w in ws[:2]]
    finally:
        kernels.force_isa(None)
    assert len(got) == len(ws)
    for g, e, w in zip(got, expected, ws, strict=True):
        assert g.shape == (n_tokens, w.shape[0])
        np.testing.assert_array_equal(g, e)
    for g, e in zip(got_1d, expected_1d, strict=True):
        assert g.shape == e.shape
        np.testing.assert_array_equal(g, e)


def test_linear_many_refuses_mismatched_inputs() -> None:
    rng = np.random.default_rng(12)
    a, b = random_weight(T.Q4_K, 8, 256, rng), random_weight(T.Q4_K, 8, 512, rng)
    x = rng.standard_normal((2, 256)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\(2, 256\).*\(8, 512\) needs \(n_tokens, 512\)"):
        kernels.linear_many(x, (a, b))
    with pytest.raises(ValueError, match=r"float32"):
        kernels.linear_many(x.astype(np.float64), (a,))
    many = [a] * 9  # more than one C call takes: falls back to one call per weight
    assert all(np.array_equal(y, kernels.linear(x, a)) for y in kernels.linear_many(x, many))


def test_weight_checks_are_remembered_per_object() -> None:
    """linear() checks a weight once and keeps its pointer while the weight lives; a new weight
    (even at a recycled id) is checked and read afresh, and a dead one leaves the cache."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 64)).astype(np.float32)
    for _ in range(3):  # each loop's weight dies before the next is made: ids get reused
        w = random_weight(T.Q8_0, 5, 64, rng)
        y = kernels.linear(x, w)
        assert_within_bound(T.Q8_0, x, w, y)  # a stale pointer would read another weight
        np.testing.assert_array_equal(kernels.linear(x, w), y)  # the cached path
        assert id(w) in kernels._WEIGHT_ARGS
        key = id(w)
        del w
        assert key not in kernels._WEIGHT_ARGS


# ---------------------------------------------------------------- bad inputs
@dataclass
class FakeWeight:  # QuantTensor would refuse a wrong byte size, so the check is tested here
    qtype: T
    shape: tuple[int, int]
    data: np.ndarray


def test_bad_inputs_raise_value_error_naming_shapes() -> None:
    rng = np.random.default_rng(5)
    w = random_weight(T.Q5_0, 8, 64, rng)
    x = rng.standard_normal((3, 64)).astype(np.float32)
    with pytest.raises(ValueError, match=r"float32.*\(3, 64\)"):
        kernels.linear(x.astype(np.float64), w)
    with pytest.raises(ValueError, match=r"\(3, 32\).*\(8, 64\)"):
        kernels.linear(x[:, :32].copy(), w)
    with pytest.raises(ValueError, match=r"C-contiguous.*\(3, 32\)"):
        kernels.linear(x[:, ::2], w)
    with pytest.raises(ValueError, match=r"\(3, 64, 1\).*\(8, 64\)"):
        kernels.linear(x.reshape(3, 64, 1), w)
    with pytest.raises(ValueError, match=r"Q5_0 \(8, 64\).*\d+ bytes, expected 352"):
        kernels.linear(x, FakeWeight(T.Q5_0, (8, 64), w.data[:7]))
    with pytest.raises(ValueError, match=r"out has shape \(8,\), expected \(3, 8\)"):
        kernels.linear(x, w, out=np.empty(8, dtype=np.float32))
    with pytest.raises(ValueError, match="cols 48 not a multiple of 32"):
        kernels.linear(x[:, :48].copy(), FakeWeight(T.Q5_0, (8, 48), w.data))
    with pytest.raises(ValueError, match="isa must be one of"):
        kernels.linear(x, w, isa="neon")
