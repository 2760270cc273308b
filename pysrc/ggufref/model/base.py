"""Stage 6: a loaded model — config, weights (still in their GGUF blocks), KV cache.

``Model.forward(tokens, pos0)`` runs one batched pass: a whole prompt (prefill) or one token
(decode), and returns the logits of the last position (or of all, for tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ggufref.config import ModelConfig
from ggufref.errors import GGUFError, ModelError
from ggufref.gguf_file import GGUFFile
from ggufref.model.kv_cache import KVCache
from ggufref.weights import QuantTensor


# tag::layer_weights[]
@dataclass
class LayerWeights:
    attn_norm: np.ndarray  # (n_embd,)
    wq: QuantTensor  # (n_head * hd, n_embd)
    wk: QuantTensor  # (n_head_kv * hd, n_embd)
    wv: QuantTensor  # (n_head_kv * hd_v, n_embd)
    wo: QuantTensor  # (n_embd, n_head * hd_v)
    ffn_norm: np.ndarray  # (n_embd,)
    w_gate: QuantTensor  # (n_ff, n_embd)
    w_up: QuantTensor  # (n_ff, n_embd)
    w_down: QuantTensor  # (n_embd, n_ff)
    bq: np.ndarray | None = None  # (n_head * hd,)      qwen2
    bk: np.ndarray | None = None  # (n_head_kv * hd,)   qwen2
    bv: np.ndarray | None = None  # (n_head_kv * hd_v,) qwen2
    q_norm: np.ndarray | None = None  # (hd,)            qwen3, gemma3
    k_norm: np.ndarray | None = None  # (hd,)            qwen3, gemma3
    post_attn_norm: np.ndarray | None = None  # (n_embd,) gemma3
    post_ffn_norm: np.ndarray | None = None  # (n_embd,)  gemma3
    # end::layer_weights[]

    def gemma_norms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(q_norm, k_norm, post_attn_norm, post_ffn_norm): present in every gemma3 layer."""
        norms = (self.q_norm, self.k_norm, self.post_attn_norm, self.post_ffn_norm)
        if any(n is None for n in norms):
            raise ModelError(
                "a gemma3 layer needs attn_q_norm, attn_k_norm, "
                "post_attention_norm and post_ffw_norm"
            )
        return norms  # type: ignore[return-value]


def _vector(f: GGUFFile, name: str) -> np.ndarray:
    """A norm weight or bias as a small float32 array of its own (a few KiB: copying it out of
    the read-only mapping lets the kernels take it like any other buffer)."""
    return np.array(f.vector(name), dtype=np.float32)


def _optional(f: GGUFFile, name: str) -> np.ndarray | None:
    return _vector(f, name) if name in f.tensors else None


def load_layer(f: GGUFFile, cfg: ModelConfig, i: int) -> LayerWeights:
    p = f"blk.{i}."
    lw = LayerWeights(
        attn_norm=_vector(f, p + "attn_norm.weight"),
        wq=f.quant_tensor(p + "attn_q.weight"),
        wk=f.quant_tensor(p + "attn_k.weight"),
        wv=f.quant_tensor(p + "attn_v.weight"),
        wo=f.quant_tensor(p + "attn_output.weight"),
        ffn_norm=_vector(f, p + "ffn_norm.weight"),
        w_gate=f.quant_tensor(p + "ffn_gate.weight"),
        w_up=f.quant_tensor(p + "ffn_up.weight"),
        w_down=f.quant_tensor(p + "ffn_down.weight"),
        bq=_optional(f, p + "attn_q.bias"),
        bk=_optional(f, p + "attn_k.bias"),
        bv=_optional(f, p + "attn_v.bias"),
        q_norm=_optional(f, p + "attn_q_norm.weight"),
        k_norm=_optional(f, p + "attn_k_norm.weight"),
        post_attn_norm=_optional(f, p + "post_attention_norm.weight"),
        post_ffn_norm=_optional(f, p + "post_ffw_norm.weight"),
    )
    _check_shapes(f, cfg, i, lw)
    return lw


def _check_shapes(f: GGUFFile, cfg: ModelConfig, i: int, lw: LayerWeights) -> None:
    expect = {
        "attn_q": (lw.wq, (cfg.n_head * cfg.head_dim, cfg.n_embd)),
        "attn_k": (lw.wk, (cfg.n_head_kv * cfg.head_dim, cfg.n_embd)),
        "attn_v": (lw.wv, (cfg.n_head_kv * cfg.head_dim_v, cfg.n_embd)),
        "attn_output": (lw.wo, (cfg.n_embd, cfg.n_head * cfg.head_dim_v)),
        "ffn_gate": (lw.w_gate, (cfg.n_ff, cfg.n_embd)),
        "ffn_up": (lw.w_up, (cfg.n_ff, cfg.n_embd)),
        "ffn_down": (lw.w_down, (cfg.n_embd, cfg.n_ff)),
    }
    for name, (w, shape) in expect.items():
        if w.shape != shape:
            raise ModelError(
                f"{f.path}: blk.{i}.{name}.weight has shape {w.shape}, "
                f"expected {shape} from the metadata"
            )
    vectors = {  # norms and biases: numpy would broadcast a wrong length, or fail far from here
        "attn_norm": (lw.attn_norm, cfg.n_embd),
        "ffn_norm": (lw.ffn_norm, cfg.n_embd),
        "attn_q.bias": (lw.bq, cfg.n_head * cfg.head_dim),
        "attn_k.bias": (lw.bk, cfg.n_head_kv * cfg.head_dim),
        "attn_v.bias": (lw.bv, cfg.n_head_kv * cfg.head_dim_v),
        "attn_q_norm": (lw.q_norm, cfg.head_dim),
        "attn_k_norm": (lw.k_norm, cfg.head_dim),
        "post_attention_norm": (lw.post_attn_norm, cfg.n_embd),
        "post_ffw_norm": (lw.post_ffn_norm, cfg.n_embd),
    }
    for name, (v, n) in vectors.items():
        if v is not None:
            _check_vector(f, f"blk.{i}.{name}", v, n)


def _check_vector(f: GGUFFile, name: str, v: np.ndarray, n: int) -> None:
    """Length from the metadata, and finite values: a NaN norm weight has no block scale for
    check_scales to find, and the kernels' 8-bit activation quantizer does not pass NaN on."""
    if v.shape != (n,):
        raise ModelError(f"{f.path}: {name} has shape {v.shape}, expected ({n},) from the metadata")
    if not np.isfinite(v).all():
        i = int(np.argmin(np.isfinite(v)))
        raise GGUFError(f.path, f"tensor {name!r}: element {i}", float(v[i]), "a finite number")


def _check_io_shapes(
    f: GGUFFile, cfg: ModelConfig, embd: QuantTensor, out: QuantTensor, norm: np.ndarray
) -> None:
    for w in (embd, out):
        if w.cols != cfg.n_embd or w.rows < cfg.n_vocab:
            raise ModelError(
                f"{f.path}: {w.name} has shape {w.shape}, expected "
                f"(n_vocab >= {cfg.n_vocab}, {cfg.n_embd}) from the metadata"
            )
    _check_vector(f, "output_norm.weight", norm, cfg.n_embd)


def kv_cache_need(cfg: ModelConfig, n_ctx: int) -> int:
    """Bytes of our float32 K + V cache for n_ctx positions (the one formula, weights.py)."""
    return KVCache.bytes_for(cfg.n_layer, cfg.n_head_kv, n_ctx, cfg.head_dim, cfg.head_dim_v)


# tag::kv_memory_check[]
def check_kv_memory(cfg: ModelConfig, n_ctx: int) -> None:
    """Refuse a context whose KV cache cannot fit in memory, before allocating it.

    np.zeros would not fail at once (the pages are mapped lazily): the process would be killed
    by the OOM killer half-way through a long generation instead.
    """
    need = kv_cache_need(cfg, n_ctx)
    have = available_memory()
    if have is not None and need > have:
        raise ModelError(
            f"a context of {n_ctx} positions needs {_size(need)} of KV cache but only "
            f"{_size(have)} of memory is available; lower --ctx"
        )


# end::kv_memory_check[]


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup v2 limit."""
    have = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    have = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as fh:
            limit = fh.read().strip()
        with open("/sys/fs/cgroup/memory.current") as fh:
            used = int(fh.read())
        if limit != "max":
            have = min(have if have is not None else 1 << 62, int(limit) - used)
    except (OSError, ValueError):
        pass
    return have


DEFAULT_CTX = 1024  # positions the KV cache holds when no size is asked for


class Model:
    """A model ready to run: weights mapped from the file, a KV cache of n_ctx positions."""

    def __init__(self, f: GGUFFile, n_ctx: int | None = None, weights: str = "quantized"):
        self.file = f
        self.cfg = cfg = ModelConfig.from_gguf(f)
        n_ctx = n_ctx or min(cfg.n_ctx_train, DEFAULT_CTX)
        if n_ctx <= 0:
            raise ModelError(f"context size must be > 0, got {n_ctx}")
        if n_ctx > cfg.n_ctx_train:
            raise ModelError(
                f"context size {n_ctx} exceeds the model's trained context {cfg.n_ctx_train}"
            )
        self.n_ctx = n_ctx
        self.token_embd = f.quant_tensor("token_embd.weight")  # (n_vocab, n_embd)
        self.output = self.token_embd if cfg.tied_output else f.quant_tensor("output.weight")
        self.output_norm = _vector(f, "output_norm.weight")
        _check_io_shapes(f, cfg, self.token_embd, self.output, self.output_norm)
        self.layers = [load_layer(f, cfg, i) for i in range(cfg.n_layer)]
        f.check_scales()  # a NaN/inf block scale, named here rather than as NaN logits later
        self.weights = weights
        if weights == "dequantized":  # the seed's path: FP32 [in, out] copies (dequantized.py)
            from ggufref.dequantized import dequantize_model

            dequantize_model(self, kv_cache_need(cfg, n_ctx), available_memory())
        elif weights != "quantized":
            raise ModelError(f"weights must be 'quantized' or 'dequantized', got {weights!r}")
        check_kv_memory(cfg, n_ctx)
        self.cache = KVCache(cfg.n_layer, cfg.n_head_kv, n_ctx, cfg.head_dim, cfg.head_dim_v)
        self._forward = forward_for(cfg.arch)
        # one-token passes in one C call where the architecture has one (llama.fused_decode);
        # the FP32 teaching mode and V wider than K keep the Python loop
        self._decode = fused_decode_for(cfg.arch)
        if weights != "quantized" or cfg.head_dim_v != cfg.head_dim:
            self._decode = None
        self.decode_plan: Any = None  # built on first use (kernels.LlamaDecodePlan)

    def embed(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (n,) -> float32 (n, n_embd): decode just these rows of token_embd."""
        if tokens.size and (tokens.min() < 0 or tokens.max() >= self.token_embd.rows):
            raise ModelError(f"token id out of range 0..{self.token_embd.rows - 1}")
        return self.token_embd.embed_rows(tokens)  # (n, n_embd), decoded from those rows only

    def forward(
        self, tokens: list[int] | np.ndarray, pos0: int | None = None, all_logits: bool = False
    ) -> np.ndarray:
        """Run tokens at positions pos0.. through the model; (n or 1, n_vocab) float32 logits."""
        toks = np.asarray(tokens, dtype=np.int64).reshape(-1)
        pos0 = self.cache.n_past if pos0 is None else pos0
        if pos0 + len(toks) > self.n_ctx:
            raise ModelError(
                f"{pos0 + len(toks)} tokens do not fit in the context of "
                f"{self.n_ctx} (use --ctx to enlarge it)"
            )
        if len(toks) == 1 and self._decode is not None:
            logits = self._decode(self, toks, pos0, all_logits)
        else:
            logits = self._forward(self, toks, pos0, all_logits)
        self.cache.n_past = pos0 + len(toks)
        return logits

    def reset(self) -> None:
        self.cache.n_past = 0


def fused_decode_for(name: str) -> Callable[..., np.ndarray] | None:
    """The architecture's one-token pass in one C call, if it has one (llama.fused_decode)."""
    import importlib

    from ggufref.arch import ARCHITECTURES

    module = importlib.import_module(f"ggufref.model.{ARCHITECTURES[name].forward}")
    return getattr(module, "fused_decode", None)


def forward_for(name: str) -> Callable[..., np.ndarray]:
    """The forward pass of an architecture: f(model, tokens, pos0, all_logits, ops=FAST)."""
    import importlib

    from ggufref.arch import ARCHITECTURES

    module = importlib.import_module(f"ggufref.model.{ARCHITECTURES[name].forward}")
    return module.forward  # type: ignore[no-any-return]
