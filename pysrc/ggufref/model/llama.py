"""Stage 6c: the llama family forward pass — llama, mistral, qwen2 (QKV biases), qwen3 (QK norm).

Legend: n = tokens in this pass, e = n_embd, h = n_head, g = n_head_kv, hd = head_dim, f = n_ff,
V = n_vocab. Every matmul is ``linear(x, W)`` on the quantized weight: y = x @ W.T.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ggufref.kernels import linear
from ggufref.model.ops import attention, rms_norm, rope, rope_angles, silu

if TYPE_CHECKING:
    from ggufref.model.base import Model


# tag::llama_forward[]
def forward(m: Model, tokens: np.ndarray, pos0: int, all_logits: bool) -> np.ndarray:
    cfg, n = m.cfg, len(tokens)
    positions = np.arange(pos0, pos0 + n)
    cos, sin = rope_angles(positions, cfg.head_dim, cfg.rope_base, cfg.rope_freq_scale)
    x = m.embed(tokens)  # (n, e)
    for il, lw in enumerate(m.layers):
        # attention block: x += Wo . attn(rope(Wq.h), rope(Wk.h), Wv.h), h = norm(x)
        h = rms_norm(x, lw.attn_norm, cfg.rms_eps)
        q = linear(h, lw.wq)  # (n, h*hd)
        k = linear(h, lw.wk)  # (n, g*hd)
        v = linear(h, lw.wv)  # (n, g*hd)
        if lw.bq is not None:  # qwen2
            q, k, v = q + lw.bq, k + lw.bk, v + lw.bv
        q = q.reshape(n, cfg.n_head, cfg.head_dim)
        k = k.reshape(n, cfg.n_head_kv, cfg.head_dim)
        v = v.reshape(n, cfg.n_head_kv, cfg.head_dim_v)
        if lw.q_norm is not None:  # qwen3: RMSNorm over each head before RoPE
            q = rms_norm(q, lw.q_norm, cfg.rms_eps)
            k = rms_norm(k, lw.k_norm, cfg.rms_eps)
        q = rope(q, cos, sin, cfg.rope_neox)
        k = rope(k, cos, sin, cfg.rope_neox)
        m.cache.store(il, pos0, k, v)
        kc, vc = m.cache.view(il, pos0 + n)
        a = attention(q, kc, vc, positions, cfg.attn_scale)  # (n, h, hd)
        x = x + linear(a.reshape(n, -1), lw.wo)
        # feed-forward block: x += W_down . (silu(W_gate.h) * W_up.h), h = norm(x)
        h = rms_norm(x, lw.ffn_norm, cfg.rms_eps)
        x = x + linear(silu(linear(h, lw.w_gate)) * linear(h, lw.w_up), lw.w_down)
    if not all_logits:
        x = x[-1:]
    return linear(rms_norm(x, m.output_norm, cfg.rms_eps), m.output)  # (n or 1, V)
# end::llama_forward[]
