"""Tiny but complete GGUF models, one per architecture, for tests and parity goldens.

``write_model(path, arch)`` writes a model llama.cpp can load: real metadata, a small vocabulary
from ``testing.vocab``, and random weights in a mix of block formats (``gguf.quants.quantize``
where it exists, random valid blocks for the K-quants). Everything is seeded, so the same call
writes the same bytes.

Sizes: n_embd 256 and n_ff 512 so K-quant rows (256 per super-block) fit; a few layers.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

from ggufref import formats
from ggufref.arch import ARCHITECTURES
from ggufref.testing.vocab import add_vocab, build_vocab

if TYPE_CHECKING:
    from ggufref.plan import ModelShape

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
VOCAB_KIND = {name: a.test_vocab for name, a in ARCHITECTURES.items()}  # from ggufref.arch
# Optional attention keys write_model can leave out (arch.DEFAULTS: derived when absent).
OMITTABLE_KEYS = ("attention.head_count_kv", "attention.key_length", "attention.value_length")


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


def _write_metadata(
    w: gguf.GGUFWriter,
    arch: str,
    s: TinyShape,
    file_type: int = gguf.LlamaFileType.MOSTLY_Q4_K_M,
    name: str | None = None,
    without: tuple[str, ...] = (),
) -> None:
    w.add_name(name or f"ggufref tiny {arch}")
    w.add_context_length(s.n_ctx)
    w.add_embedding_length(s.n_embd)
    w.add_block_count(s.n_layer)
    w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    if "attention.head_count_kv" not in without:
        w.add_head_count_kv(s.n_head_kv)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(1_000_000.0 if arch in ("qwen3", "gemma3") else 10_000.0)
    if "attention.key_length" not in without:
        w.add_key_length(s.head_dim)
    if "attention.value_length" not in without:
        w.add_value_length(s.head_dim)
    w.add_rope_dimension_count(s.head_dim)
    if s.sliding_window:
        w.add_sliding_window(s.sliding_window)
    w.add_file_type(file_type)


# tag::write_model[]
def write_model(
    path: str | Path,
    arch: str,
    seed: int = 0,
    mix: dict[str, T] | None = None,
    shape: TinyShape | None = None,
    without: tuple[str, ...] = (),
) -> Path:
    """Write a tiny `arch` model (llama, mistral, qwen2, qwen3, gemma3) to `path`.

    ``without``: optional keys (``OMITTABLE_KEYS``) to leave out, so the reader's defaults apply;
    the shape must then be what their absence means."""
    if unknown := set(without) - set(OMITTABLE_KEYS):
        raise ValueError(f"cannot leave out {sorted(unknown)}; only {OMITTABLE_KEYS}")
    path = Path(path)
    s = shape or default_shape(arch)
    mix = {**MIXES["llama" if arch == "mistral" else arch], **(mix or {})}
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(str(path), arch)
    _write_metadata(w, arch, s, without=without)
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


# ---------------------------------------------------------------------------------------------
# Full-size synthetic models: a preset shape, llama.cpp's per-tensor formats, streamed to disk
# ---------------------------------------------------------------------------------------------
# ``python -m ggufref.testing.models --preset qwen3-8b --ftype Q4_K_M OUT.gguf`` writes a file of
# the real model's size (~5 GB) with random but valid blocks, for benchmarks: every tensor gets
# the format ``plan.tensors`` gives it, so ``ggufref plan`` and the file agree byte for byte. No
# tensor is ever whole in memory: each is generated and written in chunks of ~32 MiB.

CHUNK_BYTES = 32 << 20
PAD_TOKEN_TYPE = 5  # gguf.TokenType.UNUSED: filler tokens that bring the vocabulary to n_vocab


def _scale_factor(qtype: T, std: float, rng: np.random.Generator) -> float:
    """How much to scale unit fp16 block scales so random blocks decode to weights of `std`:
    measured once, on a sample of blocks, instead of decoding the whole tensor."""
    sample = _chunk_blocks(qtype, 64, 4 * formats.layout(qtype).block_elems, 1.0, 1.0, rng)
    return std / max(float(formats.dequantize(qtype, sample).std()), 1e-12)


def _chunk_blocks(
    qtype: T, rows: int, cols: int, std: float, factor: float, rng: np.random.Generator
) -> np.ndarray:
    """uint8 (rows, row_bytes): random code bytes, fp16 scales uniform in [0.5, 1) x factor."""
    lay = formats.layout(qtype)
    if qtype in (T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        return random_blocks(qtype, rows, cols, std, rng)  # gguf.quants quantizes these
    n_blocks = rows * cols // lay.block_elems
    raw = np.frombuffer(rng.bytes(n_blocks * lay.block_bytes), dtype=np.uint8)
    raw = raw.reshape(n_blocks, lay.block_bytes).copy()
    offs = lay.offsets()
    for f in (f for f in lay.fields if f.dtype == "f2"):
        vals = (rng.uniform(0.5, 1.0, (n_blocks, 1)) * factor).astype(np.float16)
        raw[:, offs[f.name] : offs[f.name] + 2] = vals.view(np.uint8)
    return raw.reshape(rows, -1)


def _tensor_chunks(
    name: str, qtype: T, shape: list[int], rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """The bytes of one tensor, a few MiB at a time (vectors: norms near 1, biases near 0)."""
    if len(shape) == 1:
        base = 0.0 if name.endswith(".bias") else 1.0
        yield (base + 0.1 * rng.standard_normal(shape[0])).astype(np.float32).view(np.uint8)
        return
    rows, cols = shape
    std = 1.0 if name.startswith("token_embd") else 1.0 / np.sqrt(cols)
    factor = _scale_factor(qtype, std, rng) if formats.layout(qtype).block_elems == 256 else 0.0
    step = max(1, CHUNK_BYTES // formats.layout(qtype).row_bytes(cols))
    for r0 in range(0, rows, step):
        yield _chunk_blocks(qtype, min(step, rows - r0), cols, std, factor, rng)


def _add_padded_vocab(w: gguf.GGUFWriter, kind: str, n_vocab: int) -> None:
    """The test vocabulary of `kind`, padded with unused tokens to the preset's n_vocab (the
    embedding and output matrices must have exactly one row per token)."""
    v = build_vocab(kind)
    extra = n_vocab - len(v.tokens)
    if extra < 0:
        raise ValueError(f"n_vocab {n_vocab} is smaller than the {kind} vocabulary")
    w.add_tokenizer_model(v.model)
    w.add_tokenizer_pre(v.pre)
    w.add_token_list(v.tokens + [f"<|ggufref_unused_{i}|>" for i in range(extra)])
    w.add_token_scores(v.scores + [0.0] * extra)
    w.add_token_types(v.types + [PAD_TOKEN_TYPE] * extra)
    if v.merges:
        w.add_token_merges(v.merges)
    w.add_bos_token_id(v.special_ids["bos"])
    w.add_eos_token_id(v.special_ids["eos"])
    for key, add in (("unk", w.add_unk_token_id), ("pad", w.add_pad_token_id)):
        if key in v.special_ids:
            add(v.special_ids[key])
    w.add_add_bos_token(v.add_bos)
    w.add_add_eos_token(False)
    if v.add_space_prefix is not None:
        w.add_add_space_prefix(v.add_space_prefix)


# tag::write_preset[]
def write_preset(
    path: str | Path, shape: ModelShape, ftype: str, seed: int = 0, progress: bool = False
) -> Path:
    """Write a model of `shape` in file type `ftype` (Q4_K_M, Q8_0, ...) to `path`, streaming."""
    from ggufref import plan

    path = Path(path)
    planned = plan.tensors(shape, ftype)
    ids = {name: i for i, name in plan.FILE_TYPE_IDS.items()}
    tiny = TinyShape(
        shape.n_embd, shape.n_ff, shape.n_layer, shape.n_head, shape.n_head_kv, shape.head_dim,
        shape.n_ctx_train, 512 if shape.arch == "gemma3" else 0,
    )  # fmt: skip
    w = gguf.GGUFWriter(str(path), shape.arch)
    name = f"ggufref synthetic {shape.arch} ({ftype}, random weights)"
    _write_metadata(w, shape.arch, tiny, ids[plan.check_ftype(ftype)], name)
    _add_padded_vocab(w, VOCAB_KIND[shape.arch], shape.n_vocab)
    for t in planned:
        w.add_tensor_info(t.name, t.shape, np.dtype(np.float32), t.nbytes, raw_dtype=T[t.type])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    bar = _progress(sum(t.nbytes for t in planned), progress, path.name)
    for t in planned:
        _write_tensor(w, t.nbytes, _tensor_chunks(t.name, T[t.type], t.shape, rng), bar.update)
    bar.close()
    w.close()
    return path


# end::write_preset[]


def _write_tensor(
    w: gguf.GGUFWriter, nbytes: int, chunks: Iterable[np.ndarray], done: Callable[[int], object]
) -> None:
    """GGUFWriter.write_tensor_data, a chunk at a time (it wants the whole tensor in one array):
    align, write the chunks, pad, and take the tensor off the writer's queue."""
    fout = w.fout[0]  # type: ignore[index]
    info = w.tensors[0].pop(next(iter(w.tensors[0])))
    w.write_padding(fout, fout.tell())
    written = 0
    for chunk in chunks:
        chunk.tofile(fout)
        written += chunk.nbytes
        done(chunk.nbytes)
    if written != nbytes or info.nbytes != nbytes:
        raise ValueError(f"wrote {written} bytes for a tensor of {info.nbytes}")
    w.write_padding(fout, nbytes)
    w.state = gguf.gguf_writer.WriterState.WEIGHTS


def _progress(total: int, enabled: bool, label: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, desc=label, disable=not enabled)


def main(argv: list[str] | None = None) -> int:
    """python -m ggufref.testing.models --preset qwen3-8b --ftype Q4_K_M OUT.gguf"""
    import argparse

    from ggufref import plan

    p = argparse.ArgumentParser(prog="python -m ggufref.testing.models", description=main.__doc__)
    p.add_argument("--preset", required=True, choices=sorted(plan.PRESETS))
    p.add_argument("--ftype", default="Q4_K_M", choices=list(plan.FTYPES))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("out", help="the .gguf file to write")
    args = p.parse_args(argv)
    out = Path(args.out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_preset(out, plan.PRESETS[args.preset], args.ftype, args.seed, progress=True)
    except OSError as e:  # a read-only or full disk: one line, no half-written file left
        out.unlink(missing_ok=True)
        print(f"error: cannot write {out}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
