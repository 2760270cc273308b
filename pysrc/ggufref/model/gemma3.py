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

from ggufref.kernels import linear
from ggufref.model.ops import attention, gelu_tanh, rms_norm, rope, rope_angles

if TYPE_CHECKING:
    from ggufref.model.base import Model


# tag::gemma3_forward[]
def forward(m: Model, tokens: np.ndarray, pos0: int, all_logits: bool) -> np.ndarray:
    cfg, n = m.cfg, len(tokens)
    positions = np.arange(pos0, pos0 + n)
    rope_global = rope_angles(positions, cfg.head_dim, cfg.rope_base, cfg.rope_freq_scale)
    rope_local = rope_angles(positions, cfg.head_dim, cfg.rope_base_local)
    x = m.embed(tokens) * np.float32(np.sqrt(cfg.n_embd))  # gemma: scaled embedding (n, e)
    for il, lw in enumerate(m.layers):
        local = cfg.swa_layers[il]
        cos, sin = rope_local if local else rope_global
        h = rms_norm(x, lw.attn_norm, cfg.rms_eps)
        q = linear(h, lw.wq).reshape(n, cfg.n_head, cfg.head_dim)
        k = linear(h, lw.wk).reshape(n, cfg.n_head_kv, cfg.head_dim)
        v = linear(h, lw.wv).reshape(n, cfg.n_head_kv, cfg.head_dim_v)
        q = rope(rms_norm(q, lw.q_norm, cfg.rms_eps), cos, sin, cfg.rope_neox)  # per-head norm
        k = rope(rms_norm(k, lw.k_norm, cfg.rms_eps), cos, sin, cfg.rope_neox)
        q = q * np.float32(cfg.attn_scale)  # gemma scales Q, then attends with scale 1
        m.cache.store(il, pos0, k, v)
        kc, vc = m.cache.view(il, pos0 + n)
        window = cfg.sliding_window if local else 0
        a = attention(q, kc, vc, positions, 1.0, window)  # (n, h, hd)
        o = rms_norm(linear(a.reshape(n, -1), lw.wo), lw.post_attn_norm, cfg.rms_eps)
        x = x + o  # gemma: norm after attention, then residual
        h = rms_norm(x, lw.ffn_norm, cfg.rms_eps)
        f = linear(gelu_tanh(linear(h, lw.w_gate)) * linear(h, lw.w_up), lw.w_down)
        x = x + rms_norm(f, lw.post_ffn_norm, cfg.rms_eps)  # gemma: norm after FFN too
    if not all_logits:
        x = x[-1:]
    return linear(rms_norm(x, m.output_norm, cfg.rms_eps), m.output)  # tied: token_embd (V, e)
# end::gemma3_forward[]
