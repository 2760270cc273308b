"""Forward-pass pieces against their textbook formulas, and the KV cache against recomputation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ggufref.errors import ModelError
from ggufref.generate import Engine
from ggufref.model.ops import attention, gelu_tanh, rms_norm, rope, rope_angles, silu
from ggufref.testing.models import write_model

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
    scale = np.abs(full[-3:]).max()
    for got, want in zip(steps, full[-3:], strict=True):
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


def test_fast_ops_forward_equals_the_numpy_reference(engine: Engine) -> None:
    """The engine runs FAST (fused C ops); REF is the readable numpy: same logits, same argmax."""
    from ggufref.model import gemma3, llama
    from ggufref.model.ops import FAST, REF

    fwd = gemma3.forward if engine.model.cfg.arch == "gemma3" else llama.forward
    ids = np.array(engine.encode("The capital of France is Paris; the capital of"))
    m = engine.model
    fast = fwd(m, ids, 0, True, FAST)
    ref = fwd(m, ids, 0, True, REF)
    scale = np.abs(ref).max()
    assert np.abs(fast - ref).max() < 0.02 * scale
    assert (fast.argmax(1) == ref.argmax(1)).mean() >= 0.9
