"""Stage 6a: the small operations between the matmuls, as readable numpy.

Legend: n = tokens in this pass, d = width of the normalised axis, h = heads, hd = head dim,
c = cache positions, f = FFN width.

These follow ggml's CPU arithmetic where it changes results visibly: RMSNorm sums squares in
double, RoPE angles are built by repeated float32 multiplication, GELU goes through an fp16
lookup (input and output rounded to fp16), and the KV cache holds fp16-rounded values. The fused
C versions in ``kernels`` (when built) compute the same formulas; tests compare the two.
"""

from __future__ import annotations

import numpy as np

from ggufref import kernels

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
# ``REF`` is the numpy above, written to be read; ``FAST`` calls the fused C kernels, which compute
# the same formulas in the same precision. The forward passes take either: tests run both and
# compare, the engine runs FAST.


class RefOps:
    """The readable numpy versions (slow: every call allocates)."""

    @staticmethod
    def rms_norm(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
        return rms_norm(x, w, eps)

    @staticmethod
    def rope(
        x: np.ndarray, positions: np.ndarray, base: float, neox: bool, freq_scale: float = 1.0
    ) -> np.ndarray:
        cos, sin = rope_angles(positions, x.shape[-1], base, freq_scale)
        return rope(x, cos, sin, neox)

    @staticmethod
    def attention(
        q: np.ndarray,
        k_layer: np.ndarray,
        v_layer: np.ndarray,
        pos0: int,
        scale: float,
        window: int = 0,
    ) -> np.ndarray:
        """k_layer, v_layer: (h_kv, n_ctx, hd), positions 0 .. pos0 + n - 1 filled."""
        n = q.shape[0]
        end = pos0 + n
        return attention(q, k_layer[:, :end], v_layer[:, :end], np.arange(pos0, end), scale, window)

    @staticmethod
    def gelu_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        return gelu_tanh(gate) * up

    @staticmethod
    def silu_mul(gate: np.ndarray, up: np.ndarray) -> np.ndarray:
        return silu(gate) * up

    @staticmethod
    def linear(x: np.ndarray, w: object) -> np.ndarray:
        return kernels.linear(x, w)  # type: ignore[arg-type]


class FastOps(RefOps):
    """The fused C kernels (``ggufref.kernels``), same formulas, in place where possible."""

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


REF, FAST = RefOps(), FastOps()
