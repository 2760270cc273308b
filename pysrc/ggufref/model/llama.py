"""Stage 6c: the llama family forward pass — llama, mistral, qwen2 (QKV biases), qwen3 (QK norm).

Legend: n = tokens in this pass, e = n_embd, h = n_head, g = n_head_kv, hd = head_dim, f = n_ff,
V = n_vocab. Every matmul is ``linear(x, W)`` on the quantized weight: y = x @ W.T;
``linear_many(x, Ws)`` is the same for weights that share an input (Q, K, V; gate, up).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ggufref import kernels
from ggufref.model.ops import FAST, Ops

if TYPE_CHECKING:
    from ggufref.model.base import Model


# tag::llama_forward[]
def forward(
    m: Model, tokens: np.ndarray, pos0: int, all_logits: bool, ops: Ops = FAST
) -> np.ndarray:
    cfg, n = m.cfg, len(tokens)
    pos = np.arange(pos0, pos0 + n, dtype=np.int32)
    x = m.embed(tokens)  # (n, e)
    for il, lw in enumerate(m.layers):
        # attention block: x += Wo . attn(rope(Wq.h), rope(Wk.h), Wv.h), h = norm(x)
        h = ops.rms_norm(x, lw.attn_norm, cfg.rms_eps)
        q, k, v = ops.linear_many(h, (lw.wq, lw.wk, lw.wv))  # (n, h*hd), (n, g*hd), (n, g*hd)
        if lw.bq is not None and lw.bk is not None and lw.bv is not None:  # qwen2
            q, k, v = q + lw.bq, k + lw.bk, v + lw.bv
        q = q.reshape(n, cfg.n_head, cfg.head_dim)
        k = k.reshape(n, cfg.n_head_kv, cfg.head_dim)
        v = v.reshape(n, cfg.n_head_kv, cfg.head_dim_v)
        if lw.q_norm is not None and lw.k_norm is not None:  # qwen3: per-head RMSNorm
            q = ops.rms_norm(q, lw.q_norm, cfg.rms_eps)
            k = ops.rms_norm(k, lw.k_norm, cfg.rms_eps)
        q = ops.rope(q, pos, cfg.rope_base, cfg.rope_neox, cfg.rope_freq_scale)
        k = ops.rope(k, pos, cfg.rope_base, cfg.rope_neox, cfg.rope_freq_scale)
        k_all, v_all = ops.kv(m.cache, il, pos0, k, v)  # (g, n_ctx, hd): the layer's cache
        a = ops.attention(q, k_all, v_all, pos0, cfg.attn_scale)  # (n, h, hd)
        x = x + ops.linear(a.reshape(n, -1), lw.wo)
        # feed-forward block: x += W_down . (silu(W_gate.h) * W_up.h), h = norm(x)
        h = ops.rms_norm(x, lw.ffn_norm, cfg.rms_eps)
        gate, up = ops.linear_many(h, (lw.w_gate, lw.w_up))  # (n, f) each
        x = x + ops.linear(ops.silu_mul(gate, up), lw.w_down)
    if not all_logits:
        x = x[-1:]
    return ops.linear(ops.rms_norm(x, m.output_norm, cfg.rms_eps), m.output)  # (n or 1, V)


# end::llama_forward[]


# One token, all layers in one C call (csrc/decode.c): the loop above, operation for operation,
# through the same kernels, without coming back to Python between them. Model.forward takes it
# for one-token passes on weights kept in their blocks; tests/test_decode.py holds it to the
# Python loop above bit for bit.
def fused_decode(m: Model, tokens: np.ndarray, pos0: int, all_logits: bool) -> np.ndarray:
    cfg = m.cfg
    if m.decode_plan is None:
        m.decode_plan = kernels.LlamaDecodePlan(cfg, m.layers, m.cache.k, m.cache.v)
    x = m.embed(tokens)  # (1, e)
    m.decode_plan.run(x, pos0)
    return FAST.linear(FAST.rms_norm(x, m.output_norm, cfg.rms_eps), m.output)  # (1, V)
