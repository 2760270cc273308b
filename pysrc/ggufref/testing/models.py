"""Tiny but complete GGUF models, one per architecture, for tests and parity goldens.

``write_model(path, arch)`` writes a model llama.cpp can load: real metadata, a small vocabulary
from ``testing.vocab``, and random weights in a mix of block formats (``gguf.quants.quantize``
where it exists, random valid blocks for the K-quants). Everything is seeded, so the same call
writes the same bytes.

Sizes: n_embd 256 and n_ff 512 so K-quant rows (256 per super-block) fit; a few layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from ggufref import formats
from ggufref.testing.vocab import add_vocab

# Which block format each weight role uses, per architecture: together they cover every format.
MIXES: dict[str, dict[str, T]] = {
    "llama": dict(
        token_embd=T.Q8_0,
        output=T.Q6_K,
        attn_q=T.Q4_0,
        attn_k=T.Q4_1,
        attn_v=T.Q8_0,
        attn_output=T.Q4_K,
        ffn_gate=T.Q5_K,
        ffn_up=T.Q6_K,
        ffn_down=T.Q2_K,
    ),
    "qwen2": dict(
        token_embd=T.Q4_0,
        output=T.Q8_0,
        attn_q=T.Q5_0,
        attn_k=T.Q5_1,
        attn_v=T.F16,
        attn_output=T.Q3_K,
        ffn_gate=T.Q4_K,
        ffn_up=T.Q4_K,
        ffn_down=T.Q6_K,
    ),
    "qwen3": dict(
        token_embd=T.F16,
        output=T.Q5_0,
        attn_q=T.Q8_0,
        attn_k=T.F32,
        attn_v=T.BF16,
        attn_output=T.Q5_K,
        ffn_gate=T.Q4_K,
        ffn_up=T.Q3_K,
        ffn_down=T.Q6_K,
    ),
    "gemma3": dict(
        token_embd=T.Q8_0,
        attn_q=T.Q5_0,
        attn_k=T.Q5_0,
        attn_v=T.Q8_0,
        attn_output=T.Q4_K,
        ffn_gate=T.Q5_0,
        ffn_up=T.Q5_0,
        ffn_down=T.Q6_K,
    ),
}
VOCAB_KIND = {
    "llama": "bpe-llama3",
    "qwen2": "bpe-qwen2",
    "qwen3": "bpe-qwen2",
    "gemma3": "spm",
    "mistral": "spm-llama2",
}


@dataclass(frozen=True)
class TinyShape:
    n_embd: int = 256
    n_ff: int = 512
    n_layer: int = 2
    n_head: int = 4
    n_head_kv: int = 2
    head_dim: int = 64
    n_ctx: int = 512
    sliding_window: int = 0


def default_shape(arch: str) -> TinyShape:
    if arch == "gemma3":  # six layers: five sliding-window layers then one global one
        return TinyShape(n_layer=6, n_head_kv=1, sliding_window=16)
    return TinyShape()


# tag::random_blocks[]
def random_blocks(
    qtype: T, rows: int, cols: int, std: float, rng: np.random.Generator
) -> np.ndarray:
    """uint8 (rows, row_bytes) of valid blocks whose decoded weights have roughly `std`.

    Formats gguf.quants can quantize go through it; K-quants (no quantizer in gguf.quants) get
    random code bytes with finite fp16 scales, rescaled so the decoded weights have `std`.
    """
    lay = formats.layout(qtype)
    if qtype in (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        w = (rng.standard_normal((rows, cols)) * std).astype(np.float32)
        if qtype == T.F32:
            return w.view(np.uint8)
        if qtype == T.F16:
            return w.astype(np.float16).view(np.uint8)
        return gguf.quants.quantize(w, qtype).reshape(rows, -1)
    raw = rng.integers(0, 256, (rows * cols // lay.block_elems, lay.block_bytes), dtype=np.uint8)
    offs = lay.offsets()
    scale_fields = [f for f in lay.fields if f.dtype == "f2"]
    for f in scale_fields:
        vals = rng.uniform(0.5, 1.0, (raw.shape[0], 1)).astype(np.float16)
        raw[:, offs[f.name] : offs[f.name] + 2] = vals.view(np.uint8)
    actual = float(formats.dequantize(qtype, raw).std()) or 1.0
    for f in scale_fields:
        field = raw[:, offs[f.name] : offs[f.name] + 2].copy().view(np.float16)
        scaled = (field.astype(np.float32) * (std / actual)).astype(np.float16)
        raw[:, offs[f.name] : offs[f.name] + 2] = scaled.view(np.uint8)
    return raw.reshape(rows, -1)


# end::random_blocks[]


def _matrix_specs(arch: str, s: TinyShape, n_vocab: int) -> list[tuple[str, str, int, int]]:
    """(tensor name, role, rows=out, cols=in) for every weight matrix."""
    q_out, kv_out = s.n_head * s.head_dim, s.n_head_kv * s.head_dim
    specs = [("token_embd.weight", "token_embd", n_vocab, s.n_embd)]
    if arch != "gemma3":
        specs.append(("output.weight", "output", n_vocab, s.n_embd))
    for i in range(s.n_layer):
        p = f"blk.{i}."
        specs += [
            (p + "attn_q.weight", "attn_q", q_out, s.n_embd),
            (p + "attn_k.weight", "attn_k", kv_out, s.n_embd),
            (p + "attn_v.weight", "attn_v", kv_out, s.n_embd),
            (p + "attn_output.weight", "attn_output", s.n_embd, q_out),
            (p + "ffn_gate.weight", "ffn_gate", s.n_ff, s.n_embd),
            (p + "ffn_up.weight", "ffn_up", s.n_ff, s.n_embd),
            (p + "ffn_down.weight", "ffn_down", s.n_embd, s.n_ff),
        ]
    return specs


def _vector_specs(arch: str, s: TinyShape) -> list[tuple[str, int, str]]:
    """(tensor name, length, kind) for norms ("norm": around 1) and biases ("bias": around 0)."""
    out = [("output_norm.weight", s.n_embd, "norm")]
    for i in range(s.n_layer):
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", s.n_embd, "norm"),
            (p + "ffn_norm.weight", s.n_embd, "norm"),
        ]
        if arch == "qwen2":
            out += [
                (p + "attn_q.bias", s.n_head * s.head_dim, "bias"),
                (p + "attn_k.bias", s.n_head_kv * s.head_dim, "bias"),
                (p + "attn_v.bias", s.n_head_kv * s.head_dim, "bias"),
            ]
        if arch in ("qwen3", "gemma3"):
            out += [
                (p + "attn_q_norm.weight", s.head_dim, "norm"),
                (p + "attn_k_norm.weight", s.head_dim, "norm"),
            ]
        if arch == "gemma3":
            out += [
                (p + "post_attention_norm.weight", s.n_embd, "norm"),
                (p + "post_ffw_norm.weight", s.n_embd, "norm"),
            ]
    return out


def _write_metadata(w: gguf.GGUFWriter, arch: str, s: TinyShape) -> None:
    w.add_name(f"ggufref tiny {arch}")
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv(s.n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1_000_000.0 if arch in ("qwen3", "gemma3") else 10_000.0)
    w.add_key_length(s.head_dim)
    w.add_value_length(s.head_dim)
    w.add_rope_dimension_count(s.head_dim)
    if s.sliding_window:
        w.add_sliding_window(s.sliding_window)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)


# tag::write_model[]
def write_model(
    path: str | Path,
    arch: str,
    seed: int = 0,
    mix: dict[str, T] | None = None,
    shape: TinyShape | None = None,
) -> Path:
    """Write a tiny `arch` model (llama, mistral, qwen2, qwen3, gemma3) to `path`."""
    path = Path(path)
    s = shape or default_shape(arch)
    mix = {**MIXES["llama" if arch == "mistral" else arch], **(mix or {})}
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    _write_metadata(w, arch, s)
    n_vocab = add_vocab(w, VOCAB_KIND[arch])
    for name, role, rows, cols in _matrix_specs(arch, s, n_vocab):
        std = 1.0 if role == "token_embd" else 1.0 / np.sqrt(cols)
        qtype = mix[role]
        raw = random_blocks(qtype, rows, cols, std, rng)
        if qtype in (T.F32, T.F16):  # plain float arrays: the writer takes them as they are
            w.add_tensor(name, raw.view(np.float32 if qtype == T.F32 else np.float16))
        else:
            w.add_tensor(name, raw, raw_dtype=qtype)
    for name, n, kind in _vector_specs(arch, s):
        base = 1.0 if kind == "norm" else 0.0
        w.add_tensor(name, (base + 0.1 * rng.standard_normal(n)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


# end::write_model[]
