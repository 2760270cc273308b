"""Stage 5: the native kernels, seen from Python.

``linear(x, W)`` computes ``x @ W.T`` for a weight kept in its GGUF blocks (a ``QuantTensor``):
the C side (csrc/, built by ``_kernels_build.py``) converts each row of ``x`` once to what
ggml's CPU backend multiplies that format with (its vec_dot_type): 8-bit Q8_0 blocks of 32 for
Q4_0 / Q5_0 / Q8_0, Q8_1 (Q8_0 plus s = half(d * sum q)) for Q4_1 / Q5_1, Q8_K blocks of 256
for the K-quants, half precision for F16 weights, bfloat16 for BF16, float32 for F32; then it
computes the dot products with SIMD kernels chosen at run time for this CPU, on a persistent
thread pool. The rounding rules are ggml's bit for bit (tests/test_kernels.py pins them).

Every shape, dtype and byte size is checked here, before C sees a pointer: C trusts its inputs.

Legend: T = n_tokens, rows = out_features, cols = in_features.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

import numpy as np

from ggufref import formats
from ggufref.dequantized import DenseTensor

try:
    from ggufref._kernels import ffi, lib
except ImportError as exc:  # pragma: no cover - depends on the build
    raise ImportError(
        "ggufref's native kernels are not built: run `pip install -e .` or "
        "`python3 pysrc/ggufref/_kernels_build.py` from the repository root"
    ) from exc

ISA_NAMES = ("scalar", "avx2", "avx512")  # the order of enum ggr_isa in csrc/ggufref_internal.h

_STATUS = {
    lib.GGR_ERR_TYPE: "unsupported block format",
    lib.GGR_ERR_SHAPE: "bad shape",
    lib.GGR_ERR_NOMEM: "out of memory for scratch buffers",
    lib.GGR_ERR_ISA: "instruction set not available on this CPU",
}


class _Weight(Protocol):
    """What linear() needs of a weight (weights.QuantTensor has it)."""

    @property
    def qtype(self) -> Any: ...
    @property
    def shape(self) -> tuple[int, int]: ...
    @property
    def data(self) -> np.ndarray: ...


def _check(status: int, what: str) -> None:
    if status != lib.GGR_OK:
        raise RuntimeError(f"{what}: {_STATUS.get(status, f'status {status}')}")


def _isa_code(isa: str | None) -> int:
    if isa is None or isa == "auto":
        return -1
    if isa not in ISA_NAMES:
        raise ValueError(f"isa must be one of auto, {', '.join(ISA_NAMES)}; got {isa!r}")
    code = ISA_NAMES.index(isa)
    if code > lib.ggr_best_isa():
        raise ValueError(f"isa {isa!r} is not available on this CPU (best: {best_isa()})")
    return code


def _f32(name: str, a: Any, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """a as a float32 C-contiguous ndarray, or ValueError naming what is wrong."""
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise ValueError(f"{name} must be float32, got {a.dtype} {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous, got strides {a.strides} for {a.shape}")
    if shape is not None and a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    return a


# ---------------------------------------------------------------- linear
def _check_weight(w: _Weight) -> tuple[int, int]:
    rows, cols = (int(v) for v in w.shape)
    lay = formats.layout(w.qtype)
    if cols % lay.block_elems:
        raise ValueError(f"weight {w.shape}: cols {cols} not a multiple of {lay.block_elems}")
    data = w.data
    expected = rows * lay.row_bytes(cols)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8:
        raise ValueError(f"weight {w.shape} data must be a uint8 array")
    if data.nbytes != expected:
        raise ValueError(
            f"weight {lay.name} {w.shape} data has {data.nbytes} bytes, expected {expected}"
        )
    if not data.flags.c_contiguous:
        raise ValueError(f"weight {lay.name} {w.shape} data must be C-contiguous")
    return rows, cols


# A decode step calls linear() ~100 times with the same weights: remember each weight's checked
# shape and its cffi pointer (keyed by id, guarded by a weak reference so a new object that
# reuses a dead one's id is never mistaken for it). QuantTensor is frozen: its data never changes.
_WEIGHT_ARGS: dict[int, tuple[weakref.ref[Any], tuple[int, int, int, Any]]] = {}


def _weight_args(w: _Weight) -> tuple[int, int, int, Any]:
    """(qtype, rows, cols, pointer to the blocks) of a checked weight."""
    key = id(w)
    hit = _WEIGHT_ARGS.get(key)
    if hit is not None and hit[0]() is w:
        return hit[1]
    rows, cols = _check_weight(w)
    args = (int(w.qtype), rows, cols, ffi.from_buffer("uint8_t[]", w.data))

    def forget(_: object) -> None:
        _WEIGHT_ARGS.pop(key, None)

    try:
        ref = weakref.ref(w, forget)
    except TypeError:  # not weak-referenceable: check it every time
        return args
    _WEIGHT_ARGS[key] = (ref, args)
    return args


# tag::linear[]
def linear(
    x: np.ndarray, w: _Weight, out: np.ndarray | None = None, *, isa: str | None = None
) -> np.ndarray:
    """y = x @ W.T with W in its GGUF blocks.

    x:   float32 (T, cols) or (cols,), C-contiguous
    w:   QuantTensor, shape (rows, cols)
    out: optional float32 (T, rows) (or (rows,)) to write into
    isa: None/"auto" (best for this CPU), or "scalar" / "avx2" / "avx512" to pin the kernels
    returns float32 (T, rows), or (rows,) for a 1-D x
    """
    if isinstance(w, DenseTensor):  # --weights dequantized: the seed's FP32 path, plain BLAS
        return w.linear(x) if out is None else np.matmul(x, w.wt, out=out)
    qtype, rows, cols, w_ptr = _weight_args(w)
    _f32("x", x)
    if x.ndim not in (1, 2) or x.shape[-1] != cols:
        raise ValueError(f"x has shape {x.shape}, weight {tuple(w.shape)} needs (n_tokens, {cols})")
    n_tokens = 1 if x.ndim == 1 else x.shape[0]
    out_shape = (rows,) if x.ndim == 1 else (n_tokens, rows)
    if out is None:
        out = np.empty(out_shape, dtype=np.float32)
    else:
        _f32("out", out, out_shape)
    if n_tokens == 0:
        return out
    status = lib.ggr_linear(
        qtype,
        w_ptr,
        rows,
        cols,
        ffi.from_buffer("float[]", x),
        n_tokens,
        ffi.from_buffer("float[]", out, require_writable=True),
        -1 if isa is None else _isa_code(isa),
    )
    if status != lib.GGR_OK:
        _check(status, f"linear {formats.layout(w.qtype).name} {tuple(w.shape)}")
    return out


# end::linear[]


# tag::linear_many[]
def linear_many(x: np.ndarray, ws: tuple[_Weight, ...] | list[_Weight]) -> list[np.ndarray]:
    """[x @ W.T for W in ws]: weights that share their input (Q, K, V; gate, up) in one call.

    The results are linear(x, W)'s bit for bit; a decode step quantizes x once and hands every
    weight's row tiles to the thread pool as one job (see ggr_linear_many in csrc/linear.c).
    x: float32 (T, cols) or (cols,); every W has `cols` columns. Returns one array per weight.
    """
    if any(isinstance(w, DenseTensor) for w in ws) or not 1 <= len(ws) <= lib.GGR_MANY_MAX:
        return [linear(x, w) for w in ws]
    args = [_weight_args(w) for w in ws]
    cols = args[0][2]
    _f32("x", x)
    for w, (_, _, c, _) in zip(ws, args, strict=True):
        if x.ndim not in (1, 2) or x.shape[-1] != c or c != cols:
            raise ValueError(
                f"x has shape {x.shape}, weight {tuple(w.shape)} needs (n_tokens, {c})"
            )
    n_tokens = 1 if x.ndim == 1 else x.shape[0]
    outs = [np.empty((r,) if x.ndim == 1 else (n_tokens, r), np.float32) for _, r, _, _ in args]
    if n_tokens == 0:
        return outs
    status = lib.ggr_linear_many(
        len(ws),
        [a[0] for a in args],
        [a[3] for a in args],
        [a[1] for a in args],
        cols,
        ffi.from_buffer("float[]", x),
        n_tokens,
        [ffi.from_buffer("float[]", o, require_writable=True) for o in outs],
        -1,
    )
    if status != lib.GGR_OK:
        _check(
            status, "linear " + ", ".join(f"{formats.layout(w.qtype).name} {w.shape}" for w in ws)
        )
    return outs


# end::linear_many[]


# ---------------------------------------------------------------- threads, CPU, ISA
def set_threads(n: int) -> int:
    """Resize the thread pool (n <= 0: one per core). Returns the number of threads running."""
    return int(lib.ggr_set_threads(int(n)))


def get_threads() -> int:
    return int(lib.ggr_get_threads())


def cpu_features() -> dict[str, bool]:
    """What this CPU and OS support, e.g. {"avx2": True, "avx512": True, "vnni": True, ...}."""
    f = lib.ggr_cpu_features()
    return {
        "avx2": bool(f & 1),
        "avx512": bool(f & 2),
        "vnni": bool(f & 4),
        "avx_vnni": bool(f & 8),
        "avx512_bf16": bool(f & 16),
    }


def best_isa() -> str:
    return ISA_NAMES[lib.ggr_best_isa()]


def force_isa(name: str | None) -> None:
    """Pin later calls to one kernel level ("scalar", "avx2", "avx512"); None/"auto" undoes it."""
    _check(lib.ggr_force_isa(_isa_code(name)), f"force_isa({name!r})")


def current_isa() -> str:
    return ISA_NAMES[lib.ggr_current_isa()]


def stream_read(buf: np.ndarray) -> float:
    """Read every byte of buf on the pool's threads (a bandwidth probe). Returns a checksum."""
    if not buf.flags.c_contiguous:
        raise ValueError("stream_read needs a C-contiguous buffer")
    return float(lib.ggr_stream_read(ffi.from_buffer("uint8_t[]", buf.view(np.uint8)), buf.nbytes))


# ---------------------------------------------------------------- fused ops (csrc/ops.c)
def _out(name: str, out: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    return np.empty(shape, dtype=np.float32) if out is None else _f32(name, out, shape)


def _fp(a: np.ndarray) -> Any:
    return ffi.from_buffer("float[]", a, require_writable=True)


# tag::rms_norm[]
def rms_norm(x: np.ndarray, w: np.ndarray, eps: float, out: np.ndarray | None = None) -> np.ndarray:
    """y = x / sqrt(mean(x**2, axis=-1) + eps) * w (GGUF files store Gemma's 1 + w already).

    x: float32 (n, d) or (d,); w: float32 (d,); returns float32 like x (out may be x itself).
    The sum of squares is accumulated in double (as ggml does), everything else in float32.
    """
    _f32("x", x)
    if x.ndim not in (1, 2):
        raise ValueError(f"x has shape {x.shape}, expected (n, d) or (d,)")
    d = x.shape[-1]
    _f32("w", w, (d,))
    out = _out("out", out, x.shape)
    n = 1 if x.ndim == 1 else x.shape[0]
    _check(lib.ggr_rms_norm(_fp(x), _fp(w), n, d, eps, _fp(out)), "rms_norm")
    return out


# end::rms_norm[]


def rope(
    x: np.ndarray,
    positions: np.ndarray,
    theta_base: float,
    neox: bool,
    freq_scale: float = 1.0,
    n_rot: int | None = None,
) -> np.ndarray:
    """Rotary position embedding, in place on x (n_tokens, n_heads, head_dim); returns x.

    positions: int32 (n_tokens,). Pair i of each head (i < n_rot/2, n_rot = head_dim unless
    given) turns by pos * freq_scale * theta_base**(-2i / n_rot); normal pairing rotates
    (x[2i], x[2i+1]), NeoX pairing (x[i], x[i + n_rot/2]).
    """
    _f32("x", x)
    if x.ndim != 3:
        raise ValueError(f"x has shape {x.shape}, expected (n_tokens, n_heads, head_dim)")
    n_tokens, n_heads, head_dim = x.shape
    n_rot = head_dim if n_rot is None else n_rot
    if n_rot <= 0 or n_rot % 2 or n_rot > head_dim or n_rot > 1024:
        raise ValueError(f"n_rot {n_rot} must be even, positive and <= head_dim {head_dim}")
    if not isinstance(positions, np.ndarray) or positions.dtype != np.int32:
        raise ValueError("positions must be an int32 numpy array")
    if positions.shape != (n_tokens,) or not positions.flags.c_contiguous:
        raise ValueError(f"positions has shape {positions.shape}, expected ({n_tokens},)")
    status = lib.ggr_rope(
        _fp(x), ffi.from_buffer("int32_t[]", positions), n_tokens, n_heads, head_dim, n_rot,
        theta_base, int(neox), freq_scale,
    )  # fmt: skip
    _check(status, "rope")
    return x


def _glu_args(gate: np.ndarray, up: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    _f32("gate", gate)
    _f32("up", up, gate.shape)
    return _out("out", out, gate.shape)


# tag::gelu_tanh_mul[]
def gelu_tanh_mul(
    gate: np.ndarray, up: np.ndarray, out: np.ndarray | None = None, exact: bool = False
) -> np.ndarray:
    """out = gelu_tanh(gate) * up, gelu_tanh(x) = x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).

    gate, up, out: float32, same shape (out may be gate or up). exact=False reproduces ggml's
    CPU GELU (input rounded to half precision, result read from a half-precision table);
    exact=True evaluates the formula in float32.
    """
    out = _glu_args(gate, up, out)
    _check(lib.ggr_gelu_tanh_mul(_fp(gate), _fp(up), gate.size, int(exact), _fp(out)), "gelu")
    return out


# end::gelu_tanh_mul[]


def silu_mul(gate: np.ndarray, up: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """out = silu(gate) * up, silu(x) = x / (1 + exp(-x)). float32, same shapes.

    On AVX-512 each row (the last axis) is computed as ggml's SwiGLU computes it, so the
    feed-forward gate matches llama.cpp's bit for bit.
    """
    out = _glu_args(gate, up, out)
    row = gate.shape[-1] if gate.ndim and gate.shape[-1] else 1
    _check(lib.ggr_silu_mul(_fp(gate), _fp(up), gate.size, row, _fp(out)), "silu_mul")
    return out


_ATTN_F32, _ATTN_GGML_DECODE, _ATTN_GGML = 0, 1, 2  # GGR_ATTN_* in csrc/ggufref_internal.h


def _attention_mode(f16: bool, batch_invariant: bool) -> int:
    if not f16:
        return _ATTN_F32
    return _ATTN_GGML_DECODE if batch_invariant else _ATTN_GGML


# tag::attention[]
def attention(
    q: np.ndarray,
    k_cache: np.ndarray,
    v_cache: np.ndarray,
    pos0: int,
    n_past_total: int,
    scale: float,
    window: int = 0,
    softcap: float = 0.0,
    out: np.ndarray | None = None,
    f16: bool = False,
    batch_invariant: bool = False,
) -> np.ndarray:
    """Causal softmax attention of n_tokens new queries over a float32 KV cache.

    q:       (n_tokens, n_head, head_dim), token t at absolute position pos0 + t
    k_cache: (n_kv_head, n_ctx, head_dim), rows 0 .. n_past_total - 1 filled
    v_cache: (n_kv_head, n_ctx, head_dim)
    returns  (n_tokens, n_head, head_dim)
    Token t attends to cache rows j <= pos0 + t (and j > pos0 + t - window if window > 0);
    scores are scale * q.k, capped as softcap * tanh(s / softcap) if softcap > 0;
    head h reads kv head h // (n_head // n_kv_head).
    f16=True reproduces llama.cpp's CPU attention with its default f16 KV cache (no flash
    attention) operation by operation (csrc/attn_ggml.inc): q and the probabilities rounded to
    half, ggml's vector expf, the softmax sum in double per 16 cells, and the summation order of
    llama.cpp's F16 matmuls. Store K and V rounded to half in the cache
    (``.astype(np.float16).astype(np.float32)``) and, for Gemma, pre-scale q and pass scale=1
    (llama.cpp scales q before the rounding). llama.cpp adds in one order for a single query
    token (decode) and in another for two or more (prefill), and so does f16=True;
    batch_invariant=True uses the decode order for every token, so a token's output does not
    depend on how many tokens share the call (the float32 path never does).
    """
    _f32("q", q)
    _f32("k_cache", k_cache)
    if q.ndim != 3 or k_cache.ndim != 3:
        raise ValueError(f"q {q.shape} and k_cache {k_cache.shape} must both be 3-D")
    n_tokens, n_head, hd = q.shape
    n_kv, n_ctx, hd_k = k_cache.shape
    _f32("v_cache", v_cache, k_cache.shape)
    if hd_k != hd or n_head % n_kv or hd > 1024:
        raise ValueError(
            f"q {q.shape} does not fit k_cache {k_cache.shape} "
            "(same head_dim <= 1024; n_head a multiple of n_kv_head)"
        )
    if not (pos0 >= 0 and pos0 + n_tokens <= n_past_total <= n_ctx):
        raise ValueError(
            f"positions {pos0}..{pos0 + n_tokens - 1} need 0 <= pos0 and "
            f"pos0 + n_tokens <= n_past_total ({n_past_total}) <= n_ctx ({n_ctx})"
        )
    if window < 0:
        raise ValueError(f"window must be >= 0, got {window}")
    out = _out("out", out, q.shape)
    status = lib.ggr_attention(
        _fp(q), _fp(k_cache), _fp(v_cache), n_tokens, n_head, n_kv, hd, n_ctx, pos0, scale,
        window, softcap, _attention_mode(f16, batch_invariant), _fp(out),
    )  # fmt: skip
    _check(status, f"attention q {q.shape} cache {k_cache.shape}")
    return out


# end::attention[]


# ---------------------------------------------------------------- llama-family decode (decode.c)
class LlamaDecodePlan:
    """The cffi structs ggr_llama_decode reads: every layer's weight pointers and types, its
    norm and bias vectors and its slice of the KV cache. Built once per model (the loader has
    checked every shape); keeps the buffers it points into alive."""

    def __init__(self, cfg: Any, layers: list[Any], k_cache: np.ndarray, v_cache: np.ndarray):
        self._keep: list[Any] = []
        self.dims = ffi.new(
            "ggr_llama_dims *",
            {
                "n_embd": cfg.n_embd,
                "n_head": cfg.n_head,
                "n_head_kv": cfg.n_head_kv,
                "head_dim": cfg.head_dim,
                "n_ff": cfg.n_ff,
                "n_ctx": k_cache.shape[2],
                "rms_eps": cfg.rms_eps,
                "rope_base": cfg.rope_base,
                "rope_freq_scale": cfg.rope_freq_scale,
                "attn_scale": cfg.attn_scale,
                "rope_neox": int(cfg.rope_neox),
            },
        )
        self.n_layer = len(layers)
        self.layers = ffi.new("ggr_llama_layer[]", self.n_layer)
        for i, lw in enumerate(layers):
            c = self.layers[i]
            for field, w in (
                ("q", lw.wq), ("k", lw.wk), ("v", lw.wv), ("o", lw.wo),
                ("gate", lw.w_gate), ("up", lw.w_up), ("down", lw.w_down),
            ):  # fmt: skip
                qtype, _, _, ptr = _weight_args(w)
                setattr(c, f"{field}_type", qtype)
                setattr(c, "w" + field if len(field) == 1 else "w_" + field, ptr)
                self._keep.append(ptr)
            for field, vec in (
                ("attn_norm", lw.attn_norm), ("ffn_norm", lw.ffn_norm),
                ("bq", lw.bq), ("bk", lw.bk), ("bv", lw.bv),
                ("q_norm", lw.q_norm), ("k_norm", lw.k_norm),
            ):  # fmt: skip
                if vec is not None:
                    setattr(c, field, self._ptr(_f32(field, vec)))
            c.k_cache = self._ptr(k_cache[i])
            c.v_cache = self._ptr(v_cache[i])

    def _ptr(self, a: np.ndarray) -> Any:
        p = ffi.from_buffer("float[]", a, require_writable=a.flags.writeable)
        self._keep.append(p)
        return p

    def run(self, x: np.ndarray, pos: int) -> None:
        """x float32 (1, n_embd), the residual stream at position pos: all layers, in place."""
        status = lib.ggr_llama_decode(
            self.dims, self.layers, self.n_layer, ffi.from_buffer("float[]", x), pos
        )
        _check(status, f"llama decode at position {pos}")
