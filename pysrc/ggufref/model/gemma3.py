"""Stage 6d: the Gemma 3 forward pass.

What differs from llama (each marked below): the embedding is scaled by sqrt(n_embd); Q and K
get a per-head RMSNorm; Q is scaled by 1/sqrt(head_dim) before Q.K; attention and FFN outputs
are RMSNorm-ed again before the residual add; the FFN gate is GELU (tanh form), not SiLU; five
of every six layers attend only to a sliding window and use RoPE base 10000, the sixth sees the
whole context with the long base; the output matrix is the embedding matrix (tied).

Legend: n = tokens, e = n_embd, h = n_head, g = n_head_kv, hd = head_dim, V = n_vocab.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ggufref.model.ops import FAST, Ops

if TYPE_CHECKING:
    from ggufref.model.base import Model


# tag::gemma3_forward[]
def forward(
    m: Model, tokens: np.ndarray, pos0: int, all_logits: bool, ops: Ops = FAST
) -> np.ndarray:
    cfg, n = m.cfg, len(tokens)
    pos = np.arange(pos0, pos0 + n, dtype=np.int32)
    x = m.embed(tokens) * np.float32(np.sqrt(cfg.n_embd))  # gemma: scaled embedding (n, e)
    for il, lw in enumerate(m.layers):
        q_norm, k_norm, post_attn_norm, post_ffn_norm = lw.gemma_norms()
        local = cfg.swa_layers[il]  # sliding-window layer: short RoPE base, limited view
        base, window = (cfg.rope_base_local, cfg.sliding_window) if local else (cfg.rope_base, 0)
        scale = 1.0 if local else cfg.rope_freq_scale
        h = ops.rms_norm(x, lw.attn_norm, cfg.rms_eps)
        q, k, v = ops.linear_many(h, (lw.wq, lw.wk, lw.wv))
        q = q.reshape(n, cfg.n_head, cfg.head_dim)
        k = k.reshape(n, cfg.n_head_kv, cfg.head_dim)
        v = v.reshape(n, cfg.n_head_kv, cfg.head_dim_v)
        q = ops.rope(ops.rms_norm(q, q_norm, cfg.rms_eps), pos, base, cfg.rope_neox, scale)
        k = ops.rope(ops.rms_norm(k, k_norm, cfg.rms_eps), pos, base, cfg.rope_neox, scale)
        q = q * np.float32(cfg.attn_scale)  # gemma scales Q, then attends with scale 1
        k_all, v_all = ops.kv(m.cache, il, pos0, k, v)  # (g, n_ctx, hd): the layer's cache
        a = ops.attention(q, k_all, v_all, pos0, 1.0, window)  # (n, h, hd)
        o = ops.rms_norm(ops.linear(a.reshape(n, -1), lw.wo), post_attn_norm, cfg.rms_eps)
        x = x + o  # gemma: norm after attention, then residual
        h = ops.rms_norm(x, lw.ffn_norm, cfg.rms_eps)
        gate, up = ops.linear_many(h, (lw.w_gate, lw.w_up))
        f = ops.linear(ops.gelu_mul(gate, up), lw.w_down)
        x = x + ops.rms_norm(f, post_ffn_norm, cfg.rms_eps)  # gemma: norm after FFN too
    if not all_logits:
        x = x[-1:]
    return ops.linear(ops.rms_norm(x, m.output_norm, cfg.rms_eps), m.output)  # tied: (V, e)


# end::gemma3_forward[]
