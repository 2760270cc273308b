"""Stage 6a: the small operations between the matmuls, as readable numpy.

Legend: n = tokens in this pass, d = width of the normalised axis, h = heads, hd = head dim,
c = cache positions, f = FFN width.

The functions follow ggml's CPU arithmetic where it changes results visibly: RMSNorm sums squares in
double, RoPE angles are built by repeated float32 multiplication, GELU goes through an fp16
lookup (input and output rounded to fp16), and the KV cache holds fp16-rounded values. The fused
C versions in ``kernels`` (when built) compute the same formulas; tests compare the two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ggufref import formats, kernels

if TYPE_CHECKING:
    from ggufref.model.kv_cache import KVCache
    from ggufref.weights import QuantTensor

F32 = np.float32


# tag::rms_norm[]
def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    """x (..., d) float32, w (d,) -> x / sqrt(mean(x^2) + eps) * w."""
    mean_sq = np.mean(np.square(x, dtype=np.float64), axis=-1, keepdims=True).astype(F32)
    scale = F32(1.0) / np.sqrt(mean_sq + F32(eps))
    return (x * scale) * w


# end::rms_norm[]


# tag::rope[]
def rope_angles(positions: np.ndarray, head_dim: int, base: float, freq_scale: float = 1.0):
    """positions (n,) -> cos, sin (n, head_dim/2): angle_i = pos * freq_scale * base^(-2i/hd).

    ggml builds the angles by repeated float32 multiplication (theta *= base^(-2/hd)); so do we,
    so that angles at large positions round the same way."""
    half = head_dim // 2
    step = F32(base) ** F32(-2.0 / head_dim)
    factors = np.full((len(positions), half), step, dtype=F32)
    factors[:, 0] = positions.astype(F32) * F32(freq_scale)
    theta = np.cumprod(factors, axis=1, dtype=F32)  # (n, half)
    return np.cos(theta), np.sin(theta)


def rope(x: np.ndarray, cos: np.ndarray, sin: np.ndarray, neox: bool) -> np.ndarray:
    """x (n, h, hd) -> rotated copy. Pairs are (2i, 2i+1) normally, (i, i + hd/2) for NeoX."""
    c, s = cos[:, None, :], sin[:, None, :]  # (n, 1, hd/2)
    if neox:
        half = x.shape[-1] // 2
        a, b = x[..., :half], x[..., half:]
        return np.concatenate([a * c - b * s, a * s + b * c], axis=-1)
    a, b = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = a * c - b * s
    out[..., 1::2] = a * s + b * c
    return out


# end::rope[]


def to_f16_precision(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest fp16, keep float32 storage (the KV cache, GELU table)."""
    return x.astype(np.float16).astype(F32)


# tag::attention[]
def attention(
    q: np.ndarray, k: np.ndarray, v: np.ndarray, q_pos: np.ndarray, scale: float, window: int = 0
) -> np.ndarray:
    """Causal softmax attention with grouped-query heads.

    q (n, h, hd) at absolute positions q_pos (n,); k, v (h_kv, c, hd) hold cache positions 0..c-1.
    A query at position p sees cache positions j <= p, and with a window, only p - j < window.
    Returns (n, h, hd_v).
    """
    n, n_head, _ = q.shape
    n_kv, c, _ = k.shape
    group = n_head // n_kv
    j = np.arange(c)
    visible = j[None, :] <= q_pos[:, None]  # (n, c)
    if window:
        visible &= (q_pos[:, None] - j[None, :]) < window
    out = np.empty((n, n_head, v.shape[-1]), dtype=F32)
    qh = to_f16_precision(q)  # ggml rounds Q to fp16 for the dot with the fp16 K cache
    for h in range(n_head):
        kv = h // group  # grouped-query attention: `group` query heads share one K/V head
        scores = (qh[:, h, :] @ k[kv].T) * F32(scale)  # (n, c)
        scores = np.where(visible, scores, -np.inf)
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        p /= p.sum(axis=1, keepdims=True, dtype=np.float64).astype(F32)
        out[:, h, :] = to_f16_precision(p) @ v[kv]  # ggml: probabilities meet fp16 V as fp16
    return out


# end::attention[]


# tag::activations[]
def gelu_tanh(x: np.ndarray) -> np.ndarray:
    """GELU, tanh approximation, through an fp16 table as ggml does (|x| >= 10 passes through)."""
    xh = to_f16_precision(x)
    g = (
        F32(0.5)
        * xh
        * (F32(1.0) + np.tanh(F32(0.7978845608028654) * xh * (F32(1.0) + F32(0.044715) * xh * xh)))
    )
    g = to_f16_precision(g)
    return np.where(x <= -10.0, F32(0.0), np.where(x >= 10.0, x, g)).astype(F32)


def silu(x: np.ndarray) -> np.ndarray:
    return (x / (F32(1.0) + np.exp(-x))).astype(F32)


# end::activations[]


# ---------------------------------------------------------------------------------------------
# Two interchangeable sets of operations for the forward passes
# ---------------------------------------------------------------------------------------------
# The forward passes (llama.py, gemma3.py) take an ``Ops``: the engine runs ``FAST`` (the fused C
# kernels, ggml's arithmetic: 8-bit activations in the matmuls, fp16 K/V, fp16 GELU table);
# tests also run ``RefOps()``, exact math in float64 that shares no code with the C side.


class Ops:
    """What a forward pass needs besides the weights. Shapes as in the functions above."""

    def rms_norm(self, x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
        raise NotImplementedError

    def rope(
        self, x: np.ndarray, positions: np.ndarray, base: float, neox: bool, freq_scale: float = 1.0
    ) -> np.ndarray:
        raise NotImplementedError

    def kv(
        self, cache: KVCache, layer: int, pos0: int, k: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Store k, v (n, h_kv, hd) at positions pos0.., return the layer's (k, v) cache."""
        raise NotImplementedError

    def attention(
        self,
        q: np.ndarray,
        k_layer: np.ndarray,
        v_layer: np.ndarray,
        pos0: int,
        scale: float,
        window: int = 0,
    ) -> np.ndarray:
        raise NotImplementedError

    def gelu_mul(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def silu_mul(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def linear(self, x: np.ndarray, w: QuantTensor) -> np.ndarray:
        raise NotImplementedError

    def linear_many(self, x: np.ndarray, ws: tuple[QuantTensor, ...]) -> list[np.ndarray]:
        """[linear(x, W) for W in ws]: weights that share their input (Q, K, V; gate, up)."""
        return [self.linear(x, w) for w in ws]


# tag::reference_ops[]
class RefOps(Ops):
    """Exact math in float64: the textbook formulas, weights decoded by ``formats`` (numpy), no
    8-bit activations, no fp16 rounding anywhere, its own float64 K/V cache. Slow (every linear
    decodes its weight) and independent of the C kernels: what FAST is measured against.
    One instance per sequence: it holds that sequence's K/V."""

    ROW_BLOCK = 4096  # rows of a weight decoded at a time (the 150k-row output matrix in pieces)

    def __init__(self) -> None:
        self.k: dict[int, np.ndarray] = {}  # layer -> float64 (h_kv, c, hd)
        self.v: dict[int, np.ndarray] = {}

    def rms_norm(self, x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    def rope(
        self, x: np.ndarray, positions: np.ndarray, base: float, neox: bool, freq_scale: float = 1.0
    ) -> np.ndarray:
        x = np.asarray(x, np.float64)  # (n, h, hd)
        hd = x.shape[-1]
        inv_freq = float(base) ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)  # (hd/2,)
        theta = (positions.astype(np.float64) * freq_scale)[:, None] * inv_freq  # (n, hd/2)
        c, s = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]
        ia = np.arange(hd // 2) if neox else np.arange(0, hd, 2)  # first of each pair
        ib = ia + hd // 2 if neox else ia + 1  # its partner
        out = x.copy()
        out[..., ia] = x[..., ia] * c - x[..., ib] * s
        out[..., ib] = x[..., ia] * s + x[..., ib] * c
        return out

    def kv(
        self, cache: KVCache, layer: int, pos0: int, k: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        old_k = self.k.get(layer, np.zeros((k.shape[1], 0, k.shape[2])))[:, :pos0]
        old_v = self.v.get(layer, np.zeros((v.shape[1], 0, v.shape[2])))[:, :pos0]
        self.k[layer] = np.concatenate([old_k, np.asarray(k, np.float64).transpose(1, 0, 2)], 1)
        self.v[layer] = np.concatenate([old_v, np.asarray(v, np.float64).transpose(1, 0, 2)], 1)
        return self.k[layer], self.v[layer]

    def attention(
        self,
        q: np.ndarray,
        k_layer: np.ndarray,
        v_layer: np.ndarray,
        pos0: int,
        scale: float,
        window: int = 0,
    ) -> np.ndarray:
        n, n_head, _ = q.shape  # q (n, h, hd); k_layer, v_layer (g, pos0 + n, hd)
        group = n_head // k_layer.shape[0]
        p = np.arange(pos0, pos0 + n)[:, None]  # query positions (n, 1)
        j = np.arange(k_layer.shape[1])[None, :]  # key positions (1, c)
        visible = (j <= p) & ((p - j < window) if window else True)
        k = np.repeat(k_layer, group, axis=0)  # (h, c, hd): query head i reads K/V head i//group
        v = np.repeat(v_layer, group, axis=0)
        scores = np.einsum("nhd,hcd->hnc", np.asarray(q, np.float64), k) * scale
        scores = np.where(visible[None], scores, -np.inf)
        w = np.exp(scores - scores.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        return np.einsum("hnc,hcd->nhd", w, v)

    def gelu_mul(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        g = np.asarray(gate, np.float64)
        return 0.5 * g * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (g + 0.044715 * g**3))) * up

    def silu_mul(self, gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        g = np.asarray(gate, np.float64)
        return g / (1.0 + np.exp(-g)) * up

    def linear(self, x: np.ndarray, w: QuantTensor) -> np.ndarray:
        """x (n, cols) @ W.T -> (n, rows), W decoded a block of rows at a time and dropped."""
        x = np.asarray(x, np.float64)
        y = np.empty((x.shape[0], w.rows))
        for r in range(0, w.rows, self.ROW_BLOCK):
            rows = formats.dequantize(w.qtype, w.data[r : r + self.ROW_BLOCK])
            y[:, r : r + self.ROW_BLOCK] = x @ rows.reshape(-1, w.cols).astype(np.float64).T
        return y


# end::reference_ops[]


class FastOps(Ops):
    """The fused C kernels (``ggufref.kernels``), ggml's arithmetic, in place where possible.
    Static methods: ``bench --profile`` swaps them for timed wrappers on the class."""

    @staticmethod
    def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
        flat = np.ascontiguousarray(x).reshape(-1, x.shape[-1])
        return kernels.rms_norm(flat, w, eps).reshape(x.shape)

    @staticmethod
    def rope(
        x: np.ndarray, positions: np.ndarray, base: float, neox: bool, freq_scale: float = 1.0
    ) -> np.ndarray:
        x = np.ascontiguousarray(x)
        return kernels.rope(x, positions.astype(np.int32), base, neox, freq_scale)

    @staticmethod
    def kv(
        cache: KVCache, layer: int, pos0: int, k: np.ndarray, v: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        cache.store(layer, pos0, k, v)
        return cache.k[layer], cache.v[layer]

    @staticmethod
    def attention(
        q: np.ndarray,
        k_layer: np.ndarray,
        v_layer: np.ndarray,
        pos0: int,
        scale: float,
        window: int = 0,
    ) -> np.ndarray:
        return kernels.attention(
            np.ascontiguousarray(q),
            k_layer,
            v_layer,
            pos0,
            pos0 + q.shape[0],
            scale,
            window,
            f16=True,
        )

    @staticmethod
    def gelu_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        return kernels.gelu_tanh_mul(gate, up, out=gate)

    @staticmethod
    def silu_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        return kernels.silu_mul(gate, up, out=gate)

    @staticmethod
    def linear(x: np.ndarray, w: QuantTensor) -> np.ndarray:
        return kernels.linear(x, w)

    @staticmethod
    def linear_many(x: np.ndarray, ws: tuple[QuantTensor, ...]) -> list[np.ndarray]:
        return kernels.linear_many(x, ws)


FAST = FastOps()
