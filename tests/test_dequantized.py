"""--weights dequantized: the seed's FP32 [in, out] path gives the same model, and refuses early."""

from __future__ import annotations

import numpy as np
import pytest

from ggufref import dequantized, kernels
from ggufref.cli import main
from ggufref.errors import ModelError
from ggufref.generate import Engine
from ggufref.gguf_file import open_gguf
from ggufref.model import Model
from ggufref.model import base as model_base
from ggufref.testing.models import write_model


@pytest.fixture(scope="module", params=["llama", "qwen2", "qwen3", "gemma3"])
def model_path(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    return write_model(tmp_path_factory.mktemp("dq") / f"{request.param}.gguf", request.param)


def test_dense_tensor_is_the_transposed_decode(model_path) -> None:
    w = open_gguf(model_path).quant_tensor("blk.0.ffn_down.weight")  # (rows, cols) in blocks
    d = dequantized.dequantize_transposed(w)
    ref = w.dequantize()  # (rows, cols) through the numpy reference decoder
    assert d.wt.shape == (w.cols, w.rows) and d.shape == w.shape
    np.testing.assert_array_equal(d.wt, ref.T)
    x = np.random.default_rng(0).standard_normal((3, w.cols)).astype(np.float32)
    np.testing.assert_allclose(kernels.linear(x, d), x @ ref.T, rtol=1e-5, atol=1e-5)


def test_every_matrix_is_dense_and_logits_match(model_path) -> None:
    f = open_gguf(model_path)
    q, dq = Model(f), Model(f, weights="dequantized")
    assert all(isinstance(w, dequantized.DenseTensor) for w in dequantized.matrices(dq).values())
    tokens = [1, 5, 9, 14, 3, 7]
    lq = q.forward(tokens, 0, all_logits=True)  # (n, V)
    ld = dq.forward(tokens, 0, all_logits=True)
    # The quantized path rounds activations to 8 bits before each matmul; FP32 does not. The
    # difference is a small fraction of the logits' spread, and the argmax agrees.
    rel_rms = float(np.sqrt(np.mean((lq - ld) ** 2)) / lq.std())
    assert rel_rms < 0.05, rel_rms
    assert (lq.argmax(-1) == ld.argmax(-1)).mean() >= 5 / 6


def test_refuses_before_allocating(model_path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decode(w: object) -> object:
        raise AssertionError("dequantized a matrix before checking that it fits")

    monkeypatch.setattr(dequantized, "dequantize_transposed", no_decode)
    monkeypatch.setattr(model_base, "available_memory", lambda: 1000)
    with pytest.raises(ModelError, match=r"needs [\d,]+ bytes .* only 1,000 bytes .* available"):
        Model(open_gguf(model_path), weights="dequantized")


def test_needs_exactly_the_fp32_bytes(model_path) -> None:
    f = open_gguf(model_path)
    m = Model(f)
    need = sum(dequantized.fp32_bytes(w) for w in dequantized.matrices(m).values())
    dq = Model(f, weights="dequantized")
    held = sum(w.nbytes for w in dequantized.matrices(dq).values())
    assert need == held > 0


def test_unknown_mode_is_one_line(model_path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["generate", "-m", str(model_path), "-p", "hi", "--weights", "fp8"])
    assert exc.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    with pytest.raises(ModelError, match="quantized' or 'dequantized'"):
        Model(open_gguf(model_path), weights="fp8")


def test_default_model_same_greedy_tokens() -> None:
    """The real model: greedy continuations agree token for token over a short answer."""
    q = Engine(None, n_ctx=64, progress=False)
    ids = q.encode("The capital of France is")
    a = q.generate(ids, 8).tokens
    del q
    d = Engine(None, n_ctx=64, progress=False, weights="dequantized")
    b = d.generate(ids, 8).tokens
    assert a == b and len(a) == 8
