"""Forward-pass pieces against their textbook formulas, and the KV cache against recomputation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from ggufref import formats
from ggufref.errors import ModelError
from ggufref.generate import Engine
from ggufref.model.base import Model, forward_for
from ggufref.model.ops import (
    FAST,
    RefOps,
    attention,
    gelu_tanh,
    rms_norm,
    rope,
    rope_angles,
    silu,
)
from ggufref.model_files import resolve_model
from ggufref.testing.models import write_model
from ggufref.weights import QuantTensor

RNG = np.random.default_rng(0)


def test_rms_norm_formula() -> None:
    x = RNG.standard_normal((3, 8)).astype(np.float32)
    w = RNG.standard_normal(8).astype(np.float32)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6) * w
    np.testing.assert_allclose(rms_norm(x, w, 1e-6), ref, rtol=1e-6)


@pytest.mark.parametrize("neox", [False, True])
def test_rope_rotates_the_right_pairs(neox: bool) -> None:
    hd, pos, base = 8, 5, 10000.0
    x = RNG.standard_normal((1, 1, hd)).astype(np.float32)
    cos, sin = rope_angles(np.array([pos]), hd, base)
    y = rope(x, cos, sin, neox)[0, 0]
    for i in range(hd // 2):
        a, b = (i, i + hd // 2) if neox else (2 * i, 2 * i + 1)
        theta = pos * base ** (-2 * i / hd)
        xa, xb = float(x[0, 0, a]), float(x[0, 0, b])
        assert y[a] == pytest.approx(xa * np.cos(theta) - xb * np.sin(theta), abs=1e-5)
        assert y[b] == pytest.approx(xa * np.sin(theta) + xb * np.cos(theta), abs=1e-5)


def test_attention_is_causal_windowed_and_grouped() -> None:
    n, h, g, hd = 5, 4, 2, 8
    q = RNG.standard_normal((n, h, hd)).astype(np.float32)
    k = RNG.standard_normal((g, n, hd)).astype(np.float16).astype(np.float32)
    v = RNG.standard_normal((g, n, hd)).astype(np.float16).astype(np.float32)
    out = attention(q, k, v, np.arange(n), 0.5, window=2)
    for t in range(n):
        for head in range(h):
            kv = head // (h // g)
            seen = [j for j in range(n) if j <= t and t - j < 2]
            s = np.array([0.5 * q[t, head] @ k[kv, j] for j in seen], np.float64)
            p = np.exp(s - s.max())
            p /= p.sum()
            np.testing.assert_allclose(out[t, head], p @ v[kv, seen], rtol=2e-3, atol=2e-3)


def test_activations() -> None:
    x = np.linspace(-12, 12, 97, dtype=np.float32)
    exact = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(gelu_tanh(x), exact, rtol=2e-3, atol=2e-3)  # fp16 table
    np.testing.assert_allclose(silu(x), x / (1 + np.exp(-x.astype(np.float64))), rtol=1e-6)


def test_readable_ops_equal_the_fused_kernels() -> None:
    """The numpy functions the docs show follow ggml's arithmetic, as the C kernels do: they
    agree to float32 rounding (GELU to one fp16 step of its table)."""
    x = (RNG.standard_normal((5, 256)) * 3).astype(np.float32)
    w = RNG.standard_normal(256).astype(np.float32)
    ones = np.ones_like(x)
    np.testing.assert_array_equal(rms_norm(x, w, 1e-6), FAST.rms_norm(x, w, 1e-6))
    g = gelu_tanh(x)
    assert np.all(np.abs(g - FAST.gelu_mul(x.copy(), ones)) <= 2**-10 * np.abs(g) + 2**-14)
    np.testing.assert_allclose(silu(x), FAST.silu_mul(x.copy(), ones), rtol=1e-6, atol=1e-7)
    q = RNG.standard_normal((5, 4, 64)).astype(np.float32)
    pos = np.arange(100, 105)
    for neox in (False, True):
        cos, sin = rope_angles(pos, 64, 10000.0)
        np.testing.assert_allclose(
            rope(q, cos, sin, neox), FAST.rope(q, pos, 10000.0, neox), rtol=1e-6, atol=1e-6
        )


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3", "gemma3"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    path = write_model(tmp_path_factory.mktemp("m") / f"{request.param}.gguf", request.param)
    return Engine(path, n_ctx=64, progress=False)


def test_kv_cache_decode_equals_full_recompute(engine: Engine) -> None:
    ids = engine.encode("The quick brown fox jumps over the lazy dog")
    m = engine.model
    m.reset()
    full = m.forward(ids, 0, all_logits=True)  # one batched pass over everything
    m.reset()
    m.forward(ids[:-3], 0)
    steps = [m.forward([t])[-1] for t in ids[-3:]]  # then one token at a time from the cache
    m.reset()
    m.forward(ids[:-3], 0)
    chunk = m.forward(ids[-3:], all_logits=True)  # or three at once after the cached prefix
    scale = np.abs(full[-3:]).max()
    for got, want in zip([*steps, *chunk], [*full[-3:], *full[-3:]], strict=True):
        assert np.abs(got - want).max() < 0.02 * scale
        assert got.argmax() == want.argmax()


def test_engine_refuses_what_does_not_fit(engine: Engine) -> None:
    with pytest.raises(ModelError, match="context holds 64"):
        engine.generate(list(range(1, 70)), 4)
    with pytest.raises(ModelError, match="exceed the context of 64"):
        engine.generate([1, 2, 3], 62)
    with pytest.raises(ModelError, match="empty"):
        engine.generate([], 4)


def test_prefix_reuse_prefills_only_the_new_tokens(engine: Engine, tmp_path: Path) -> None:
    engine.reset()
    first = engine.encode("Hello, world!")
    engine.generate(first, 2)
    second = first + engine.encode(" How are you", add_bos=False)
    gen = engine.generate(second, 2)
    cold = Engine(engine.path, n_ctx=64, progress=False).generate(second, 2)
    assert gen.tokens == cold.tokens
    assert gen.timings.prefill_tokens == len(second) - len(first)  # the shared prefix was reused
    assert cold.timings.prefill_tokens == len(second)


# tag::fast_vs_reference[]
# FAST against the float64 reference, with a tolerance derived from activation quantization.
#
# REF (``RefOps``) is exact math in float64 on the decoded weights. FAST differs from it because
# every linear quantizes its input x to 8 bits per block b (32 values, Q8_0/Q8_1 with an fp16
# scale, or 256 values, Q8_K): x_i -> d_b * round(x_i / d_b), d_b = max|x_b| / 127. Each element
# moves by at most d_b / 2, spread evenly over [-d_b/2, d_b/2] (variance d_b^2 / 12): a relative
# error of about 2^-8 per matmul input, entering the residual stream at every linear. The other
# differences are an order smaller: fp16 K/V, fp16 softmax weights and GELU table (relative
# 2^-11), float32 sums (2^-24 * sqrt(n)).
# How that error reaches the logits goes through norms, softmax and GELU/SiLU, which no closed
# form follows; so the test propagates the error model itself: ``QuantizedRef`` is REF with each
# linear's input rounded to that 8-bit grid (numpy, the rule above), and E = QuantizedRef - REF is
# the activation-quantization error of this network on this prompt. FAST rounds the same values
# on the same grid, so FAST - REF is another draw of the same error plus the small terms:
#     rms(FAST - REF) <= 2 rms(E)      and      max|FAST - REF| <= 3 max|E| =: t.
# The factors leave room for a second draw (two draws of one distribution differ by ~sqrt(2) in
# rms, more in the max); a real bug (wrong RoPE pairing or base, norm epsilon, attention scale,
# window edge) moves the logits by several times E. Greedy tokens: if every logit is within t,
# the argmax can only change where REF's two best logits are within 2t of each other.


def quantize_activations(x: np.ndarray, w: QuantTensor) -> np.ndarray:
    """x (n, cols) float64 rounded the way FAST's linear rounds it for weight w (see above)."""
    if w.qtype in (T.F32, T.F16, T.BF16):  # float weights: x goes in as f32 / fp16 / bf16
        if w.qtype == T.F32:
            return x
        if w.qtype == T.F16:
            return x.astype(np.float16).astype(np.float64)
        bits = x.astype(np.float32).view(np.uint32)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).view(np.float32).astype(float)
    block = 256 if formats.layout(w.qtype).block_elems == 256 else 32
    xb = x.reshape(x.shape[0], -1, block)  # (n, blocks, block)
    d = np.abs(xb).max(-1, keepdims=True) / 127
    q = np.round(np.divide(xb, d, out=np.zeros_like(xb), where=d > 0))
    if block == 32:  # Q8_0/Q8_1 store the scale as fp16
        d = d.astype(np.float16).astype(np.float64)
    return (q * d).reshape(x.shape)


class QuantizedRef(RefOps):
    def linear(self, x: np.ndarray, w: QuantTensor) -> np.ndarray:
        return super().linear(quantize_activations(np.asarray(x, np.float64), w), w)


def check_fast_against_reference(m: Model, ids: np.ndarray) -> None:
    fwd = forward_for(m.cfg.arch)
    m.reset()
    fast = fwd(m, ids, 0, True, FAST)  # (n, V)
    ref = fwd(m, ids, 0, True, RefOps())
    err = fwd(m, ids, 0, True, QuantizedRef()) - ref  # E
    diff = fast - ref
    rms = lambda a: float(np.sqrt(np.mean(np.square(a))))  # noqa: E731
    t = 3 * float(np.abs(err).max())
    assert rms(diff) <= 2 * rms(err), f"rms {rms(diff):.4g} > 2 x {rms(err):.4g}"
    assert np.abs(diff).max() <= t, f"max {np.abs(diff).max():.4g} > {t:.4g} = 3 max|E|"
    top2 = np.sort(ref, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * t  # positions whose greedy token no rounding can flip
    assert (fast.argmax(1) == ref.argmax(1))[clear].all()


# end::fast_vs_reference[]


def test_fast_forward_equals_the_float64_reference(engine: Engine) -> None:
    ids = np.array(engine.encode("The capital of France is Paris; the capital of Germany is"))
    check_fast_against_reference(engine.model, ids)


def test_fast_forward_equals_the_float64_reference_on_the_default_model() -> None:
    """Real weights: far more sensitive than random ones (a norm epsilon x1000 shows here)."""
    e = Engine(resolve_model(None), n_ctx=64, progress=False)
    check_fast_against_reference(e.model, np.array(e.encode("The capital of France is Paris;")))


def test_reference_decode_equals_its_prefill(engine: Engine) -> None:
    """The float64 reference keeps its own K/V: one token at a time gives its batched logits."""
    fwd = forward_for(engine.model.cfg.arch)
    ids = np.array(engine.encode("Hello there, general"))
    full = fwd(engine.model, ids, 0, True, RefOps())
    ops = RefOps()
    fwd(engine.model, ids[:-2], 0, False, ops)
    steps = [
        fwd(engine.model, ids[i : i + 1], i, False, ops)[0] for i in (len(ids) - 2, len(ids) - 1)
    ]
    np.testing.assert_allclose(np.array(steps), full[-2:], rtol=1e-9, atol=1e-9)
