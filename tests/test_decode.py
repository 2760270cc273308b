"""The one-call decode step (csrc/decode.c, llama.fused_decode) against the Python forward loop.

Oracle: model/llama.py's forward (the reference the site shows), run on the same model in the
same state. The C step runs the same kernels in the same order, so logits and the KV cache it
writes must be equal bit for bit, at every step; when a model has no C step (gemma3, or the
FP32 teaching mode) the Python loop runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from ggufref import kernels
from ggufref.generate import Engine
from ggufref.model.base import Model
from ggufref.testing.models import write_model

LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3")


@pytest.fixture(scope="module", params=LLAMA_FAMILY)
def llama_family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("dec") / f"{request.param}.gguf", request.param)


def python_loop(m: Model, token: int, pos: int) -> np.ndarray:
    """The Python forward for one token, bypassing the C step."""
    saved, m._decode = m._decode, None
    try:
        return m.forward([token], pos)
    finally:
        m._decode = saved


@pytest.mark.parametrize("threads", [1, 2])
def test_c_decode_step_is_the_python_loop_bit_for_bit(llama_family: Path, threads: int) -> None:
    """A prompt, then ten greedy steps; each step run by both paths from the same state: equal
    logits, and equal K/V written at the step's position in every layer."""
    e = Engine(str(llama_family), n_ctx=64, threads=threads, progress=False)
    m = e.model
    assert m._decode is not None
    ids = e.encode("a prompt of a few tokens")
    token = int(np.argmax(m.forward(ids)[-1]))
    for step in range(10):
        pos = len(ids) + step
        ref = python_loop(m, token, pos)
        k_ref, v_ref = m.cache.k[:, :, pos].copy(), m.cache.v[:, :, pos].copy()
        m.cache.k[:, :, pos] = np.nan  # the C step must write every value
        m.cache.v[:, :, pos] = np.nan
        got = m.forward([token], pos)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(m.cache.k[:, :, pos], k_ref)
        np.testing.assert_array_equal(m.cache.v[:, :, pos], v_ref)
        assert m.cache.n_past == pos + 1
        token = int(np.argmax(got[-1]))


def test_c_decode_step_on_the_q4_K_m_mix(tmp_path: Path) -> None:
    """The formats of a real Q4_K_M file (Q4_K, Q6_K for V and ffn_down), whose AVX-512 decode
    kernels take 8 rows at a time (the other formats are covered by the fixture's mixes)."""
    mix = dict(attn_q=T.Q4_K, attn_k=T.Q4_K, attn_v=T.Q6_K, attn_output=T.Q4_K)
    mix |= dict(ffn_gate=T.Q4_K, ffn_up=T.Q4_K, ffn_down=T.Q6_K)
    path = write_model(tmp_path / "q4km.gguf", "qwen2", mix=mix)
    e = Engine(str(path), n_ctx=32, threads=2, progress=False)
    m = e.model
    m.forward(e.encode("mixed formats"))
    pos = m.cache.n_past
    ref = python_loop(m, 5, pos)
    np.testing.assert_array_equal(m.forward([5], pos), ref)


def test_models_without_a_c_step_keep_the_python_loop(tmp_path: Path) -> None:
    gemma = Engine(str(write_model(tmp_path / "g.gguf", "gemma3")), n_ctx=16, progress=False)
    assert gemma.model._decode is None
    llama = write_model(tmp_path / "l.gguf", "llama")
    dense = Engine(str(llama), n_ctx=16, progress=False, weights="dequantized")
    assert dense.model._decode is None
    ids = dense.encode("still runs")
    assert np.isfinite(dense.model.forward(ids)[-1]).all()
    assert np.isfinite(dense.model.forward([3], len(ids))[-1]).all()


def test_c_decode_refuses_a_position_outside_the_cache(tmp_path: Path) -> None:
    e = Engine(str(write_model(tmp_path / "q.gguf", "qwen3")), n_ctx=16, progress=False)
    m = e.model
    m.forward([1])
    m.forward([2], 1)  # a one-token pass: builds the plan
    plan = m.decode_plan
    assert plan is not None
    x = np.zeros((1, m.cfg.n_embd), np.float32)
    with pytest.raises(RuntimeError, match="position 16"):
        plan.run(x, 16)
    with pytest.raises(RuntimeError, match="position -1"):
        plan.run(x, -1)
    assert kernels.get_threads() >= 1
