"""The seed's path, reproduced on purpose: every weight matrix dequantized to FP32 and transposed.

``ggufref generate --weights dequantized`` runs this next to the default ``--weights quantized``.
At load, each matrix leaves its GGUF blocks: it is decoded to float32 by the numpy reference
decoders (``formats.dequantize``) and stored transposed, as ``[in, out]``, the layout the seed
project used so that ``y = x @ W`` reads like the textbook. Every matmul is then a dense float32
BLAS call, with no 8-bit activation quantization.

What it costs, and why the default never does it: 4 bytes per weight instead of ~0.56 for Q4_K
(so ~7x the memory), all of it anonymous memory that must be resident (the quantized path maps the
file and lets the kernel page it), and decode reads ~7x more bytes per token. The page
xref:memory-plan.adoc[] shows the numbers; ``ggufref plan`` predicts them for a model not on disk.

Legend: n = tokens in the pass, in = in_features (cols), out = out_features (rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gguf.quants
import numpy as np
from gguf import GGMLQuantizationType

from ggufref.errors import ModelError
from ggufref.weights import QuantTensor

WEIGHT_MODES = ("quantized", "dequantized")
ROWS_PER_CHUNK = 2048  # rows decoded at a time: the temporary float32 copy stays a few MiB


# tag::dense_tensor[]
@dataclass(frozen=True)
class DenseTensor:
    """A weight dequantized to float32 and transposed: what the seed kept in memory.

    wt:    float32 (in, out) = (cols, rows), its own anonymous memory (4 bytes per weight)
    shape: (rows, cols) = (out, in), numpy order, the same as the QuantTensor it came from
    """

    wt: np.ndarray
    source_qtype: GGMLQuantizationType
    name: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        cols, rows = self.wt.shape
        return rows, cols

    @property
    def rows(self) -> int:
        return int(self.wt.shape[1])

    @property
    def cols(self) -> int:
        return int(self.wt.shape[0])

    @property
    def qtype(self) -> GGMLQuantizationType:
        return GGMLQuantizationType.F32

    @property
    def nbytes(self) -> int:
        return int(self.wt.nbytes)

    def linear(self, x: np.ndarray) -> np.ndarray:
        """x (n, in) or (in,) -> x @ W: float32 (n, out) or (out,), one BLAS sgemm/sgemv."""
        return np.matmul(x, self.wt)

    def embed_rows(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (n,) -> float32 (n, cols): the rows of W, i.e. columns of the transposed copy."""
        return np.ascontiguousarray(self.wt[:, tokens].T)


# end::dense_tensor[]


# tag::dequantize_transpose[]
def dequantize_transposed(w: QuantTensor) -> DenseTensor:
    """W (rows, cols) in GGUF blocks -> float32 W.T (cols, rows), decoded a chunk of rows at a time.

    A K-quant super-block holds 256 consecutive weights of one row; after the transpose those 256
    values sit 4*rows bytes apart, so the blocks are gone for good: this copy is the only one.
    """
    wt = np.empty((w.cols, w.rows), dtype=np.float32)  # (in, out)
    for r0 in range(0, w.rows, ROWS_PER_CHUNK):
        r1 = min(w.rows, r0 + ROWS_PER_CHUNK)
        wt[:, r0:r1] = _decode_rows(w, r0, r1).T  # (cols, r1 - r0)
    return DenseTensor(wt, w.qtype, w.name)


def _decode_rows(w: QuantTensor, r0: int, r1: int) -> np.ndarray:
    """float32 (r1 - r0, cols). gguf-py's decoder, which formats.py's readable one matches
    bit for bit (tests/test_formats.py), is 3-4x faster on K-quants: a 1.5B model loads in
    seconds instead of a minute."""
    try:
        out = gguf.quants.dequantize(w.data[r0:r1], w.qtype)
    except NotImplementedError:
        return w.dequantize_rows(r0, r1)
    return np.asarray(out, dtype=np.float32).reshape(r1 - r0, w.cols)


# end::dequantize_transpose[]


def fp32_bytes(w: QuantTensor) -> int:
    return 4 * w.rows * w.cols


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB"


def check_fits(need_weights: int, need_kv: int, have: int | None) -> None:
    """Refuse before allocating: the seed's process was killed (or swapped to 0.002 tok/s)
    half-way through loading instead."""
    need = need_weights + need_kv
    if have is not None and need > have:
        raise ModelError(
            f"--weights dequantized needs {need:,} bytes ({_gb(need)}: FP32 weights "
            f"{need_weights:,} + KV cache {need_kv:,}) but only {have:,} bytes ({_gb(have)}) "
            "are available (MemAvailable); use --weights quantized"
        )


def matrices(model: Any) -> dict[str, QuantTensor]:
    """Every weight matrix of a loaded Model, each once (a tied output is the embedding)."""
    out: dict[str, QuantTensor] = {"token_embd": model.token_embd}
    if model.output is not model.token_embd:
        out["output"] = model.output
    for i, lw in enumerate(model.layers):
        for field in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"):
            out[f"blk.{i}.{field}"] = getattr(lw, field)
    return out


def dequantize_model(model: Any, need_kv: int, have: int | None) -> int:
    """Replace every matrix of `model` by its DenseTensor, after checking it fits.

    Returns the bytes of FP32 weights now held. The KV cache is allocated after this call.
    """
    mats = matrices(model)
    need = sum(fp32_bytes(w) for w in mats.values())
    check_fits(need, need_kv, have)
    tied = model.output is model.token_embd
    dense = {key: dequantize_transposed(w) for key, w in mats.items()}
    model.token_embd = dense["token_embd"]
    model.output = dense["token_embd"] if tied else dense["output"]
    for i, lw in enumerate(model.layers):
        for field in ("wq", "wk", "wv", "wo", "w_gate", "w_up", "w_down"):
            setattr(lw, field, dense[f"blk.{i}.{field}"])
    return need
