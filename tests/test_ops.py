"""The fused float ops of csrc/ops.c against float64 numpy formulas written out here.

Tolerances come from float32 rounding: each float32 operation errs by at most u = 2^-24 relative
(one rounding); each test states how many roundings can stack up and tests against that bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from ggufref import kernels

U = 2.0**-24  # unit roundoff of float32
ISAS = kernels.ISA_NAMES[: kernels.ISA_NAMES.index(kernels.best_isa()) + 1]


def rng_for(*key: int) -> np.random.Generator:
    return np.random.default_rng(list(key))


# ---------------------------------------------------------------- rms_norm
@pytest.mark.parametrize("shape", [(1, 640), (7, 256), (640,)])
def test_rms_norm(shape: tuple[int, ...]) -> None:
    """Squares (1 rounding), mean to float (1), + eps (1), sqrt (1), 1/ (1), x * scale (1),
    * w (1): |y - ref| <= 10 u |ref| (the double sum adds nothing visible)."""
    r = rng_for(len(shape), shape[-1])
    x = (r.standard_normal(shape) * 3).astype(np.float32)
    w = r.standard_normal(shape[-1]).astype(np.float32)
    eps = 1e-6
    y = kernels.rms_norm(x, w, eps)
    x64 = x.astype(np.float64)
    w64 = w.astype(np.float64)
    ref = x64 / np.sqrt(np.mean(x64**2, axis=-1, keepdims=True) + eps) * w64
    assert y.shape == x.shape and y.dtype == np.float32
    assert (np.abs(y - ref) <= 10 * U * np.abs(ref) + 1e-30).all()


def test_rms_norm_in_place_and_errors() -> None:
    x = rng_for(1).standard_normal((3, 64)).astype(np.float32)
    w = np.ones(64, dtype=np.float32)
    expected = kernels.rms_norm(x, w, 1e-5)
    assert kernels.rms_norm(x, w, 1e-5, out=x) is x
    np.testing.assert_array_equal(x, expected)
    with pytest.raises(ValueError, match=r"w has shape \(32,\), expected \(64,\)"):
        kernels.rms_norm(x, w[:32].copy(), 1e-5)
    with pytest.raises(ValueError, match="float32"):
        kernels.rms_norm(x.astype(np.float64), w, 1e-5)


# ---------------------------------------------------------------- rope
def rope_ref(x: np.ndarray, pos: np.ndarray, base: float, neox: bool, fs: float, n_rot: int):
    """float64: pair i of each head turns by pos * fs * base^(-2i / n_rot); (angles, result)."""
    y = x.astype(np.float64).copy()
    half = n_rot // 2
    ang = pos[:, None].astype(np.float64) * fs * base ** (-2.0 * np.arange(half) / n_rot)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a = np.arange(half) if neox else 2 * np.arange(half)
    b = a + half if neox else a + 1
    x0, x1 = y[:, :, a].copy(), y[:, :, b].copy()
    y[:, :, a] = x0 * c - x1 * s
    y[:, :, b] = x0 * s + x1 * c
    return ang, y


@pytest.mark.parametrize("neox", [False, True])
@pytest.mark.parametrize(("base", "fs", "n_rot"), [(1e4, 1.0, 64), (1e6, 1.0, 64), (1e4, 0.25, 32)])
def test_rope(neox: bool, base: float, fs: float, n_rot: int) -> None:
    """The kernel builds angle_i by i float32 multiplications (as ggml does), so
    |d angle_i| <= (2i + 3) u |angle_i|; cos/sin add <= 2 u, the rotation's products and sum
    3 u more: |y - ref| <= (|x0| + |x1|) ((2i + 3) u |angle_i| + 6 u) per pair."""
    r = rng_for(int(neox), int(base), n_rot)
    x = r.standard_normal((4, 3, 64)).astype(np.float32)
    pos = np.array([0, 1, 37, 1000], dtype=np.int32)
    ang, ref = rope_ref(x, pos, base, neox, fs, n_rot)
    y = kernels.rope(x.copy(), pos, base, neox, freq_scale=fs, n_rot=n_rot)
    half = n_rot // 2
    a = np.arange(half) if neox else 2 * np.arange(half)
    b = a + half if neox else a + 1
    mag = np.abs(x[:, :, a]) + np.abs(x[:, :, b])
    bound = mag * ((2 * np.arange(half) + 3) * U * np.abs(ang)[:, None, :] + 6 * U)
    assert (np.abs(y[:, :, a] - ref[:, :, a]) <= bound).all()
    assert (np.abs(y[:, :, b] - ref[:, :, b]) <= bound).all()
    rest = np.setdiff1d(np.arange(64), np.concatenate([a, b]))
    np.testing.assert_array_equal(y[:, :, rest], x[:, :, rest])  # beyond n_rot: untouched


def test_rope_pairings_differ_and_position_zero_is_identity() -> None:
    x = rng_for(2).standard_normal((2, 1, 8)).astype(np.float32)
    pos = np.array([0, 5], dtype=np.int32)
    normal = kernels.rope(x.copy(), pos, 10000.0, neox=False)
    neox = kernels.rope(x.copy(), pos, 10000.0, neox=True)
    np.testing.assert_array_equal(normal[0], x[0])
    assert not np.allclose(normal[1], neox[1])
    with pytest.raises(ValueError, match=r"positions has shape \(3,\), expected \(2,\)"):
        kernels.rope(x, np.zeros(3, dtype=np.int32), 1e4, False)


def test_rope_rounds_like_ggml() -> None:
    """ggml's compiled rotation fuses one product of each output into a multiply-add:
    y0 = fma(x0, c, -(x1 s)), y1 = fma(x0, s, x1 c). The kernel's own cos and sin are read off
    by rotating (1, 0); the rotation of random pairs must then round exactly like that, and the
    unfused formula (two rounded products) must differ somewhere (the test can tell them apart)."""
    r = rng_for(21)
    n_tok, hd = 6, 64
    x = r.standard_normal((n_tok, 2, hd)).astype(np.float32)
    pos = np.array([0, 1, 5, 17, 300, 4000], dtype=np.int32)
    for isa in ISAS:
        kernels.force_isa(isa)
        try:
            unit = np.zeros((n_tok, 1, hd), dtype=np.float32)
            unit[:, :, : hd // 2] = 1
            cs = kernels.rope(unit, pos, 1e4, neox=True)
            y = kernels.rope(x.copy(), pos, 1e4, neox=True)
        finally:
            kernels.force_isa(None)
        c, s = (cs[:, :, : hd // 2].astype(np.float64), cs[:, :, hd // 2 :].astype(np.float64))
        x0, x1 = x[:, :, : hd // 2].astype(np.float64), x[:, :, hd // 2 :].astype(np.float64)
        y0 = f32(x0 * c - f32(x1 * s))
        y1 = f32(x0 * s + f32(x1 * c))
        np.testing.assert_array_equal(y[:, :, : hd // 2], y0, err_msg=isa)
        np.testing.assert_array_equal(y[:, :, hd // 2 :], y1, err_msg=isa)
        assert (f32(f32(x0 * c) - f32(x1 * s)) != y0).any()


# ---------------------------------------------------------------- gated activations
def gelu64(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def test_gelu_tanh_mul_exact() -> None:
    """float32 formula: tanh's absolute error (<= 2 ulp of 1) becomes 0.5 |x| 2^-23 after
    1 + tanh, the other 8 roundings add <= 8 u |x|: |out - ref| <= 16 u (|x| + 1) |up|."""
    r = rng_for(3)
    g = (r.standard_normal(5000) * 4).astype(np.float32)
    up = r.standard_normal(5000).astype(np.float32)
    out = kernels.gelu_tanh_mul(g, up, exact=True)
    ref = gelu64(g) * up
    assert (np.abs(out - ref) <= 16 * U * (np.abs(g) + 1) * np.abs(up)).all()


def test_gelu_tanh_mul_ggml_table() -> None:
    """ggml's table: x rounded to half (|dx| <= 2^-11 |x|, and |gelu'| <= 1.13), the result
    rounded to half (<= 2^-11 |gelu| + 2^-25), then * up (u); |x| >= 10 is exact."""
    r = rng_for(4)
    g = np.concatenate([(r.standard_normal(4000) * 4), [-12.0, -10.0, 10.0, 15.5]]).astype(
        np.float32
    )
    up = r.standard_normal(g.size).astype(np.float32)
    out = kernels.gelu_tanh_mul(g.reshape(4, -1), up.reshape(4, -1)).reshape(-1)
    ref = gelu64(g) * up
    bound = np.abs(up) * (1.13 * np.abs(g) * 2.0**-11 + np.abs(gelu64(g)) * 2.0**-11 + 2.0**-25)
    assert (np.abs(out - ref) <= bound * (1 + 2 * U) + U * np.abs(ref)).all()
    np.testing.assert_array_equal(out[-4:], [0.0, 0.0, 10.0 * up[-2], 15.5 * up[-1]])


def test_gelu_table_entry_that_fusing_decides() -> None:
    """x = -1.99925 rounds to the half -1.9990234375, whose GELU lies almost on a half-precision
    midpoint: ggml's table (formula compiled with 1 + a x x fused) stores -0.045501709, the
    unfused formula would give -0.045471191. Observed in llama.cpp's ffn_geglu (Gemma 3)."""
    g = np.array([-1.99925, -1.9990234375], dtype=np.float32)
    out = kernels.gelu_tanh_mul(g, np.ones_like(g))
    np.testing.assert_array_equal(out, np.float16(-0.045501709).astype(np.float32))
    assert np.float16(-0.045501709) != np.float16(-0.045471191)


def test_gelu_table_is_the_same_on_every_kernel_level() -> None:
    g = (rng_for(6).standard_normal(1003) * 5).astype(np.float32)
    up = np.ones_like(g)
    fast = kernels.gelu_tanh_mul(g, up)
    try:
        kernels.force_isa("scalar")
        slow = kernels.gelu_tanh_mul(g, up)
    finally:
        kernels.force_isa(None)
    np.testing.assert_array_equal(fast, slow)


def test_silu_mul() -> None:
    """expf (1 ulp), 1 + e (u), x / . (u), * up (u): |out - ref| <= 6 u |ref|."""
    r = rng_for(5)
    g = (r.standard_normal((3, 1000)) * 6).astype(np.float32)
    up = r.standard_normal((3, 1000)).astype(np.float32)
    out = kernels.silu_mul(g, up)
    g64 = g.astype(np.float64)
    ref = g64 / (1 + np.exp(-g64)) * up
    assert (np.abs(out - ref) <= 6 * U * np.abs(ref) + 1e-37).all()
    with pytest.raises(ValueError, match=r"up has shape \(3, 999\), expected \(3, 1000\)"):
        kernels.silu_mul(g, up[:, :999].copy())


# ---------------------------------------------------------------- attention
def attention_ref(q, k, v, pos0, scale, window, softcap):
    """float64 loops: returns (out, sum_j p_j |v_j|, max_j scale * sum |q||k_j|) per (t, h)."""
    n_tok, n_head, hd = q.shape
    group = n_head // k.shape[0]
    out = np.zeros(q.shape)
    pv = np.zeros(q.shape)
    qk = np.zeros((n_tok, n_head))
    for t in range(n_tok):
        p = pos0 + t
        lo = max(0, p - window + 1) if window > 0 else 0
        for h in range(n_head):
            kk, vv = k[h // group, lo : p + 1].astype(np.float64), v[h // group, lo : p + 1]
            s = scale * (kk @ q[t, h].astype(np.float64))
            if softcap > 0:
                s = softcap * np.tanh(s / softcap)
            pr = np.exp(s - s.max())
            pr /= pr.sum()
            out[t, h] = pr @ vv
            pv[t, h] = pr @ np.abs(vv)
            qk[t, h] = scale * (np.abs(kk) @ np.abs(q[t, h])).max()
    return out, pv, qk


CASES = [  # n_tokens, n_head, n_kv_head, head_dim, pos0, window, softcap
    (1, 4, 1, 256, 9, 0, 0.0),
    (5, 4, 2, 64, 0, 0, 0.0),
    (6, 4, 4, 32, 3, 4, 0.0),
    (3, 2, 1, 64, 20, 0, 5.0),
    (40, 4, 1, 64, 0, 16, 0.0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "t{}h{}kv{}d{}p{}w{}c{}".format(*c))
def test_attention(case: tuple[int, int, int, int, int, int, float]) -> None:
    """Scores: a float32 dot of hd terms errs by <= ds = (hd + 8) u scale sum|q||k|; tanh softcap
    only shrinks errors. Each probability is then off by a factor within 1 +- (2 ds + 4 u), and
    the weighted sum of n_keys values adds (n_keys + 2) u: per component
    |out - ref| <= (2 ds + (n_keys + 8) u) sum_j p_j |v_j|."""
    n_tok, n_head, n_kv, hd, pos0, window, softcap = case
    n_ctx = pos0 + n_tok + 7
    r = rng_for(*case[:6])
    q = r.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    k = r.standard_normal((n_kv, n_ctx, hd)).astype(np.float32)
    v = r.standard_normal((n_kv, n_ctx, hd)).astype(np.float32)
    k[:, pos0 + n_tok :] = np.nan  # never-written cache rows: reading one would poison the output
    v[:, pos0 + n_tok :] = np.nan
    scale = hd**-0.5
    out = kernels.attention(q, k, v, pos0, pos0 + n_tok, scale, window, softcap)
    ref, pv, qk = attention_ref(q, k, v, pos0, scale, window, softcap)
    ds = (hd + 8) * U * qk
    bound = (2 * ds + (pos0 + n_tok + 8) * U)[:, :, None] * pv
    assert np.isfinite(out).all()
    assert (np.abs(out - ref) <= bound).all(), f"max err {np.abs(out - ref).max():.3g}"


def test_attention_f16_mode() -> None:
    """f16=True: q and the probabilities rounded to half (K, V given already rounded).
    Against a float64 reference with the same roundings, the bound of test_attention holds
    plus one half-precision step (2^-11 p_j) where float32 and float64 probabilities round to
    neighbouring halves; against the unrounded reference the difference must be visible."""
    n_tok, n_head, n_kv, hd, pos0 = 3, 4, 1, 64, 30
    n_ctx = pos0 + n_tok
    r = rng_for(77)
    q = r.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    k = r.standard_normal((n_kv, n_ctx, hd)).astype(np.float16).astype(np.float32)
    v = r.standard_normal((n_kv, n_ctx, hd)).astype(np.float16).astype(np.float32)
    out = kernels.attention(q, k, v, pos0, n_ctx, 0.125, f16=True)
    q16 = q.astype(np.float16).astype(np.float32)
    ref_f16, pv, qk = attention_ref(q16, k, v, pos0, 0.125, 0, 0.0)
    # the reference rounds its own probabilities: recompute with p -> half
    for t in range(n_tok):
        for h in range(n_head):
            s = 0.125 * (k[0, : pos0 + t + 1].astype(np.float64) @ q16[t, h])
            p = np.exp(s - s.max())
            p = (p / p.sum()).astype(np.float16).astype(np.float64)
            ref_f16[t, h] = p @ v[0, : pos0 + t + 1]
    ds = (hd + 8) * U * qk
    bound = (2 * ds + (n_ctx + 8) * U + 2.0**-11)[:, :, None] * pv
    assert (np.abs(out - ref_f16) <= bound).all()
    ref_f32, _, _ = attention_ref(q, k, v, pos0, 0.125, 0, 0.0)
    assert np.abs(out - ref_f32).max() > 10 * np.abs(out - ref_f16).max()


def test_attention_bad_shapes() -> None:
    q = np.zeros((2, 3, 8), dtype=np.float32)
    k = np.zeros((2, 10, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"q \(2, 3, 8\) does not fit k_cache \(2, 10, 8\)"):
        kernels.attention(q, k, k, 0, 2, 1.0)
    q = np.zeros((2, 4, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"positions 9..10 need"):
        kernels.attention(q, k, k, 9, 10, 1.0)
    with pytest.raises(ValueError, match=r"v_cache has shape \(2, 9, 8\)"):
        kernels.attention(q, k, k[:, :9].copy(), 0, 2, 1.0)


# ---------------------------------------------------------------- attention: batch invariance
def one_by_one(q, k, v, pos0, **kw):
    """Each query token in its own call (decode), stacked."""
    rows = [kernels.attention(q[t : t + 1].copy(), k, v, pos0 + t, pos0 + t + 1, **kw)[0]
            for t in range(q.shape[0])]  # fmt: skip
    return np.stack(rows)


def f16_cache(r: np.random.Generator, n_kv: int, n_ctx: int, hd: int) -> np.ndarray:
    return r.standard_normal((n_kv, n_ctx, hd)).astype(np.float16).astype(np.float32)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "t{}h{}kv{}d{}p{}w{}c{}".format(*c))
@pytest.mark.parametrize("mode", ["f32", "f16-batch-invariant"])
def test_attention_rows_do_not_depend_on_the_batch(case, mode: str) -> None:
    """A query token's output is bit-identical whether it is computed with the whole prompt
    (prefill) or alone (decode): every (token, head) runs the same operations in the same order."""
    n_tok, n_head, n_kv, hd, pos0, window, softcap = case
    n_ctx = pos0 + n_tok + 3
    r = rng_for(*case[:6], 9)
    q = r.standard_normal((n_tok, n_head, hd)).astype(np.float32)
    k, v = f16_cache(r, n_kv, n_ctx, hd), f16_cache(r, n_kv, n_ctx, hd)
    kw = dict(scale=hd**-0.5, window=window, softcap=softcap)
    if mode != "f32":
        kw.update(f16=True, batch_invariant=True)
    batch = kernels.attention(q, k, v, pos0, pos0 + n_tok, **kw)
    np.testing.assert_array_equal(batch, one_by_one(q, k, v, pos0, **kw))


# ---------------------------------------------------------------- attention: llama.cpp's f16 path
# A float32 numpy model of ggml's arithmetic, written from its description (csrc/attn_ggml.inc
# names the sources). fma(a, b, c) is computed in float64 and rounded once to float32: exact
# for the products of two halves that the matmuls add (22 significant bits).
def f32(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32)


def tree16(v: np.ndarray) -> np.ndarray:
    """(..., 16) -> (...): lanes l + l+8, then l + l+4, then (0 + 2) + (1 + 3), in float32."""
    h = v[..., :8] + v[..., 8:]
    q = h[..., :4] + h[..., 4:]
    return (q[..., 0] + q[..., 2]) + (q[..., 1] + q[..., 3])


def fma32(a, b, c) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # -inf scores (masked cells) give nan, then 0
        return f32(np.float64(a) * np.float64(b) + np.float64(c))


def accumulate(a: np.ndarray, b: np.ndarray, slots: int) -> np.ndarray:
    """a, b (n, ...): slot i % slots gets fma(a_i, b_i, slot) for i = 0, 1, ... -> (slots, ...)"""
    acc = np.zeros((slots,) + a.shape[1:], dtype=np.float32)
    for i in range(a.shape[0]):
        acc[i % slots] = fma32(a[i], b[i], acc[i % slots])
    return acc


def combine(acc: np.ndarray) -> np.ndarray:
    """ggml_vec_dot_f16's 64 slots -> 16 lanes -> one value; tinyBLAS's 16 lanes -> one value."""
    if acc.shape[0] == 64:
        acc = (acc[0:16] + acc[32:48]) + (acc[16:32] + acc[48:64])
    return tree16(np.moveaxis(acc, 0, -1))


def hexf(text: str) -> np.float32:
    return np.float32(float.fromhex(text))


def expf_ggml(x: np.ndarray) -> np.ndarray:
    """ggml_v_expf (AVX-512): round(x / ln2) by the 1.5 * 2^23 trick, a degree-5 polynomial."""
    x = f32(x)
    shift = hexf("0x1.8p23")
    n = fma32(x, hexf("0x1.715476p+0"), shift) - shift
    b = fma32(-n, hexf("0x1.7f7d1cp-20"), fma32(-n, hexf("0x1.62e4p-1"), x))
    u = b * b
    c5, c4, c3, c2, c1 = (hexf(h) for h in ("0x1.0e4020p-7", "0x1.573e2ep-5", "0x1.555e66p-3",
                                             "0x1.fffdb6p-2", "0x1.ffffecp-1"))  # fmt: skip
    j = fma32(fma32(fma32(c5, b, c4), u, fma32(c3, b, c2)), u, fma32(c1, b, 1.0))
    with np.errstate(over="ignore", invalid="ignore"):
        res = f32(np.ldexp(j.astype(np.float64), np.nan_to_num(n).astype(np.int64)))
    return np.where(np.abs(n) > 192, np.where(n <= 0, 0.0, np.inf), res).astype(np.float32)


def ggml_kq(q16: np.ndarray, K: np.ndarray, slots: int) -> np.ndarray:
    """K (n_keys, hd) . q16 (hd,) in ggml_vec_dot_f16's order (slots 64: elements past the last
    multiple of 64 are added in double) or tinyBLAS's (slots 16)."""
    hd = q16.shape[0]
    main = hd // slots * slots
    a = np.broadcast_to(q16[:main, None], (main, K.shape[0]))
    out = combine(accumulate(a, K[:, :main].T, slots)).astype(np.float64)
    for i in range(main, hd):
        out += np.float64(K[:, i] * q16[i])
    return f32(out)


def ggml_attention_row(q, K, V, p: int, lo: int, scale: float, slots: int) -> np.ndarray:
    """One token and head: q (hd,), K/V (n_ctx, hd); slots 64 = decode order, 16 = prefill."""
    q16 = q.astype(np.float16).astype(np.float32)
    c0, c1 = lo // 16 * 16, (p + 16) // 16 * 16
    w = np.full(c1 - c0, -np.inf, dtype=np.float32)
    w[lo - c0 : p + 1 - c0] = ggml_kq(q16, K[lo : p + 1], slots) * np.float32(scale)
    e = expf_ggml(w - w.max()).reshape(-1, 16)
    inv = np.float32(1.0 / np.sum(tree16(e).astype(np.float64)))
    pr = (e.reshape(-1) * inv).astype(np.float16).astype(np.float32)[lo - c0 : p + 1 - c0]
    acc = np.zeros((slots, q.shape[0]), dtype=np.float32)
    for c, pc in zip(range(lo, p + 1), pr, strict=True):
        acc[c % slots] = fma32(pc, V[c], acc[c % slots])
    return combine(acc)


def ggml_attention(q, k, v, pos0: int, scale: float, window: int, slots: int) -> np.ndarray:
    out = np.zeros_like(q)
    group = q.shape[1] // k.shape[0]
    for t in range(q.shape[0]):
        p = pos0 + t
        lo = max(0, p - window + 1) if window > 0 else 0
        for h in range(q.shape[1]):
            out[t, h] = ggml_attention_row(q[t, h], k[h // group], v[h // group], p, lo, scale,
                                           slots)  # fmt: skip
    return out


GGML_CASES = [  # n_tokens, n_head, n_kv_head, head_dim, pos0, window
    (1, 4, 1, 256, 70, 0),
    (1, 2, 1, 64, 200, 40),
    (1, 2, 2, 32, 9, 0),  # head_dim 32: every element in ggml_vec_dot_f16's double leftovers
    (5, 4, 1, 256, 60, 0),
    (6, 4, 2, 64, 130, 50),
    (9, 8, 2, 64, 150, 120),  # prefill, 4 heads per KV head: K and V rows shared by 4 heads
    (17, 4, 1, 128, 90, 0),
]


@pytest.mark.parametrize("case", GGML_CASES, ids=lambda c: "t{}h{}kv{}d{}p{}w{}".format(*c))
def test_attention_f16_is_llama_cpp_arithmetic(case: tuple[int, ...]) -> None:
    """f16=True equals the numpy model of ggml bit for bit: decode order for one token,
    llamafile's order for several (as llama.cpp); batch_invariant=True: decode order always.
    The two orders give different bits here, so the test sees which one the kernel used."""
    n_tok, n_head, n_kv, hd, pos0, window = case
    n_ctx = pos0 + n_tok + 5
    r = rng_for(*case, 5)
    q = (r.standard_normal((n_tok, n_head, hd)) * 0.3).astype(np.float32)
    k, v = f16_cache(r, n_kv, n_ctx, hd), f16_cache(r, n_kv, n_ctx, hd)
    decode = ggml_attention(q, k, v, pos0, 1.0, window, slots=64)
    kw = dict(scale=1.0, window=window, f16=True)
    for isa in ISAS:
        kernels.force_isa(isa)
        try:
            got = kernels.attention(q, k, v, pos0, pos0 + n_tok, **kw)
            invariant = kernels.attention(q, k, v, pos0, pos0 + n_tok, batch_invariant=True, **kw)
        finally:
            kernels.force_isa(None)
        np.testing.assert_array_equal(invariant, decode, err_msg=isa)
        if n_tok == 1:
            np.testing.assert_array_equal(got, decode, err_msg=isa)
        else:
            prefill = ggml_attention(q, k, v, pos0, 1.0, window, slots=16)
            assert not np.array_equal(prefill, decode)
            np.testing.assert_array_equal(got, prefill, err_msg=isa)


def test_expf_model_is_not_libm() -> None:
    """ggml's softmax exponential is its own polynomial: within 2.5 ulp of exp, but not exp."""
    x = -np.linspace(0, 20, 4001, dtype=np.float32)
    e = expf_ggml(x)
    ref = np.exp(x.astype(np.float64))
    assert (np.abs(e - ref) <= 2.5 * np.spacing(f32(ref))).all()
    assert (e != np.exp(x)).any()
    assert expf_ggml(f32([-np.inf]))[0] == 0.0
