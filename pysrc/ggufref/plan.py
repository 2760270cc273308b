"""Stage 3, before the download: what a model will cost in memory, from its shape alone.

``ggufref plan qwen3-8b --ftype Q4_K_M`` answers the seed's question without the file: it lists
every tensor the GGUF converter writes for that architecture, gives each the block format
llama.cpp's quantizer would pick for the file type (``tensor_type``), and adds up bytes as stored
(kept quantized, memory-mapped) and as FP32 (dequantized, as the seed did), plus the KV cache,
against this machine's available memory. The totals come from the same ``MemoryPlan`` that
``inspect`` builds from a real file, so the two can be compared key for key.

The per-tensor rules follow llama.cpp's ``llama_tensor_get_type`` (src/llama-quant.cpp) for the
file types listed in ``FTYPES``, without an importance matrix, for dense (non-MoE) models:

* norms, biases and other 1-D tensors stay F32;
* the output matrix (or the embedding when it doubles as the output) gets Q6_K, or Q8_0 when its
  row length is not a multiple of the file type's block size;
* attn_v and ffn_down get more bits on some layers (``more_bits_layer``) for *_K_M file types;
* finally a row length that does not divide into the chosen block size falls back to a 32-wide
  format (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0), else F16.

tests/test_plan.py checks the result byte for byte against the real files this project runs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gguf import GGMLQuantizationType as T

from ggufref import formats
from ggufref.errors import GgufrefError
from ggufref.weights import MemoryPlan


class PlanError(GgufrefError):
    """An unknown preset, file type, or a config.json that does not describe a supported model."""


# tag::model_shape[]
@dataclass(frozen=True)
class ModelShape:
    """The hyperparameters that decide every tensor's shape (Hugging Face config names in ())."""

    arch: str  # GGUF architecture: llama, qwen2, qwen3, gemma3 (model_type)
    n_vocab: int  # (vocab_size)
    n_embd: int  # (hidden_size)
    n_ff: int  # (intermediate_size)
    n_layer: int  # (num_hidden_layers)
    n_head: int  # (num_attention_heads)
    n_head_kv: int  # (num_key_value_heads)
    head_dim: int  # (head_dim, else hidden_size / num_attention_heads)
    tied: bool  # no output.weight: the embedding is the output matrix (tie_word_embeddings)
    n_ctx_train: int = 4096  # (max_position_embeddings)
    rope_freqs: bool = False  # llama 3.1 rope scaling writes rope_freqs.weight (head_dim/2,)
    # The order the layers sit in the file the quantizer read: "numeric" (0, 1, 2, ...) or
    # "lexicographic" (0, 1, 10, 11, ..., 19, 2, 20, ...: safetensors' sorted key order). The
    # quantizer counts attn_v / ffn_down tensors in file order, so the order decides WHICH layers
    # get more bits (never how many, so never the total).
    layer_order: str = "numeric"

    # end::model_shape[]

    def layers_in_file_order(self) -> list[int]:
        layers = list(range(self.n_layer))
        return sorted(layers, key=str) if self.layer_order == "lexicographic" else layers

    @property
    def head_dim_v(self) -> int:
        return self.head_dim


# Shapes of the GGUF files people download (the official conversions). The Qwen2.5 GGUFs carry
# a separate output.weight even where the checkpoint ties it, and list layers in lexicographic
# order: so do these presets.
LEX: dict[str, Any] = {"layer_order": "lexicographic"}
PRESETS: dict[str, ModelShape] = {
    "qwen3-0.6b": ModelShape("qwen3", 151936, 1024, 3072, 28, 16, 8, 128, True, 40960),
    "qwen3-1.7b": ModelShape("qwen3", 151936, 2048, 6144, 28, 16, 8, 128, True, 40960),
    "qwen3-4b": ModelShape("qwen3", 151936, 2560, 9728, 36, 32, 8, 128, True, 40960),
    "qwen3-8b": ModelShape("qwen3", 151936, 4096, 12288, 36, 32, 8, 128, False, 40960),
    "qwen2.5-0.5b": ModelShape("qwen2", 151936, 896, 4864, 24, 14, 2, 64, False, 32768, **LEX),
    "qwen2.5-1.5b": ModelShape("qwen2", 151936, 1536, 8960, 28, 12, 2, 128, False, 32768, **LEX),
    "qwen2.5-7b": ModelShape("qwen2", 152064, 3584, 18944, 28, 28, 4, 128, False, 32768, **LEX),
    "llama-3.1-8b": ModelShape("llama", 128256, 4096, 14336, 32, 32, 8, 128, False, 131072, True),
    "gemma-3-270m": ModelShape("gemma3", 262144, 640, 2048, 18, 4, 1, 256, True, 32768),
    "gemma-3-1b": ModelShape("gemma3", 262144, 1152, 6912, 26, 4, 1, 256, True, 32768),
    "gemma-3-4b": ModelShape("gemma3", 262208, 2560, 10240, 34, 8, 4, 256, True, 131072),
}
ALIASES = {
    "qwen2.5-coder-0.5b-instruct": "qwen2.5-0.5b",
    "qwen2.5-coder-1.5b-instruct": "qwen2.5-1.5b",
    "qwen2.5-coder-7b-instruct": "qwen2.5-7b",
    "llama-3.1-8b-instruct": "llama-3.1-8b",
    "gemma-3-270m-it": "gemma-3-270m",
    "gemma-3-1b-it": "gemma-3-1b",
    "gemma-3-4b-it": "gemma-3-4b",
}

# File type -> the block format most weights get (llama.cpp's default type for that ftype).
FTYPES: dict[str, T] = {
    "F32": T.F32,
    "F16": T.F16,
    "BF16": T.BF16,
    "Q8_0": T.Q8_0,
    "Q5_1": T.Q5_1,
    "Q5_0": T.Q5_0,
    "Q4_1": T.Q4_1,
    "Q4_0": T.Q4_0,
    "Q6_K": T.Q6_K,
    "Q5_K_M": T.Q5_K,
    "Q5_K_S": T.Q5_K,
    "Q4_K_M": T.Q4_K,
    "Q4_K_S": T.Q4_K,
    "Q3_K_L": T.Q3_K,
    "Q3_K_M": T.Q3_K,
    "Q3_K_S": T.Q3_K,
    "Q2_K": T.Q2_K,
}
# GGUF general.file_type values (llama.cpp's enum llama_ftype), to read a real file's ftype.
FILE_TYPE_IDS = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The tensors a converter writes, per architecture
# ---------------------------------------------------------------------------------------------


def tensor_shapes(s: ModelShape) -> list[tuple[str, tuple[int, ...]]]:
    """(GGUF name, numpy shape) of every tensor, in the order the converter writes them.
    Matrices are (rows, cols) = (out, in); vectors are (n,)."""
    q_out, kv_out, v_out = (
        s.n_head * s.head_dim,
        s.n_head_kv * s.head_dim,
        s.n_head_kv * s.head_dim_v,
    )
    out: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (s.n_vocab, s.n_embd))]
    if s.rope_freqs:
        out.append(("rope_freqs.weight", (s.head_dim // 2,)))
    for i in s.layers_in_file_order():
        p = f"blk.{i}."
        out += [
            (p + "attn_norm.weight", (s.n_embd,)),
            (p + "attn_q.weight", (q_out, s.n_embd)),
            (p + "attn_k.weight", (kv_out, s.n_embd)),
            (p + "attn_v.weight", (v_out, s.n_embd)),
            (p + "attn_output.weight", (s.n_embd, s.n_head * s.head_dim_v)),
            (p + "ffn_norm.weight", (s.n_embd,)),
            (p + "ffn_gate.weight", (s.n_ff, s.n_embd)),
            (p + "ffn_up.weight", (s.n_ff, s.n_embd)),
            (p + "ffn_down.weight", (s.n_embd, s.n_ff)),
        ]
        if s.arch == "qwen2":
            out += [
                (p + "attn_q.bias", (q_out,)),
                (p + "attn_k.bias", (kv_out,)),
                (p + "attn_v.bias", (v_out,)),
            ]
        if s.arch in ("qwen3", "gemma3"):
            out += [
                (p + "attn_q_norm.weight", (s.head_dim,)),
                (p + "attn_k_norm.weight", (s.head_dim,)),
            ]
        if s.arch == "gemma3":
            out += [
                (p + "post_attention_norm.weight", (s.n_embd,)),
                (p + "post_ffw_norm.weight", (s.n_embd,)),
            ]
    out.append(("output_norm.weight", (s.n_embd,)))
    if not s.tied:
        out.append(("output.weight", (s.n_vocab, s.n_embd)))
    return out


# ---------------------------------------------------------------------------------------------
# The block format of each tensor for a file type (llama.cpp's rules, rewritten)
# ---------------------------------------------------------------------------------------------


# tag::more_bits[]
def more_bits_layer(i: int, n: int) -> bool:
    """The layers *_K_M file types give more bits (attn_v, ffn_down): the first and last eighth,
    and every third layer in between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


# end::more_bits[]

# Where a 256-wide K-quant does not divide the row: the 32-wide format llama.cpp falls back to.
FALLBACK = {T.Q4_K: T.Q5_0, T.Q5_K: T.Q5_1, T.Q6_K: T.Q8_0, T.Q2_K: T.Q4_0, T.Q3_K: T.Q4_0}


def _fits(qtype: T, cols: int) -> bool:
    return cols % formats.layout(qtype).block_elems == 0


def _role_rule(ftype: str, role: str, layer: int, n_layer: int, gqa: int) -> T | None:
    """The format a role gets for this file type, or None for the default. `layer` is the
    tensor's rank among the file's tensors of that role (its layer index in a numeric file)."""
    more = more_bits_layer(layer, n_layer)
    if role == "attn_v":
        rules = {
            "Q2_K": T.Q4_K if gqa >= 4 else T.Q3_K,
            "Q3_K_M": T.Q5_K if layer < 2 else T.Q4_K,
            "Q3_K_L": T.Q5_K,
            "Q4_K_M": T.Q6_K if more else None,
            "Q5_K_M": T.Q6_K if more else None,
            "Q4_K_S": T.Q5_K if layer < 4 else None,
        }
        return rules.get(ftype)
    if role == "ffn_down":
        rules = {
            "Q2_K": T.Q3_K,
            "Q3_K_M": T.Q5_K if layer < n_layer // 16 else T.Q4_K,
            "Q3_K_L": T.Q5_K,
            "Q4_K_M": T.Q6_K if more else None,
            "Q5_K_M": T.Q6_K if more else None,
            "Q4_K_S": T.Q5_K if layer < n_layer // 8 else None,
        }
        return rules.get(ftype)
    if role == "attn_output":
        return {"Q2_K": T.Q3_K, "Q3_K_M": T.Q4_K, "Q3_K_L": T.Q5_K}.get(ftype)
    return None


# tag::tensor_type[]
def tensor_type(name: str, shape: tuple[int, ...], ftype: str, s: ModelShape) -> T:
    """The block format llama.cpp's quantizer writes `name` in, for file type `ftype`."""
    rank = {layer: r for r, layer in enumerate(s.layers_in_file_order())}
    default = FTYPES[ftype]
    if len(shape) < 2 or not name.endswith(".weight") or "_norm" in name:
        return T.F32  # 1-D tensors (norms, biases, rope_freqs) are never quantized
    if default in (T.F32, T.F16, T.BF16):
        return default  # not a quantized file type: every matrix is stored as the default
    cols = shape[-1]
    is_output = name == "output.weight" or (s.tied and name == "token_embd.weight")
    if is_output:  # the matrix that makes the logits keeps more bits
        qtype = T.Q8_0 if not _fits(default, cols) or default == T.Q8_0 else T.Q6_K
    else:
        role = name.split(".")[-2]
        layer = rank[int(name.split(".")[1])] if name.startswith("blk.") else 0
        rule = _role_rule(ftype, role, layer, s.n_layer, s.n_head // s.n_head_kv)
        qtype = rule or default
    if not _fits(qtype, cols):  # the row does not divide into blocks: a 32-wide format
        qtype = FALLBACK.get(qtype, qtype)
        if not _fits(qtype, cols):
            qtype = T.F16
    return qtype


# end::tensor_type[]


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


@dataclass
class TensorPlan:
    name: str
    type: str
    shape: list[int]  # numpy order
    nbytes: int


def tensors(s: ModelShape, ftype: str) -> list[TensorPlan]:
    """Every tensor with its planned block format and stored bytes."""
    ftype = check_ftype(ftype)
    out = []
    for name, shape in tensor_shapes(s):
        qtype = tensor_type(name, shape, ftype, s)
        rows = 1 if len(shape) == 1 else shape[0]
        out.append(
            TensorPlan(
                name, qtype.name, list(shape), rows * formats.layout(qtype).row_bytes(shape[-1])
            )
        )
    return out


def memory_plan(s: ModelShape, ftype: str, n_ctx: int) -> MemoryPlan:
    """The same MemoryPlan `inspect` builds from a file, built from the planned tensors."""
    planned = {t.name: (t.nbytes, _prod(t.shape)) for t in tensors(s, ftype)}
    return MemoryPlan.build(planned, s.n_layer, s.n_head_kv, s.head_dim, s.head_dim_v, n_ctx)


def _prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def check_ftype(ftype: str) -> str:
    key = ftype.upper()
    if key not in FTYPES:
        raise PlanError(f"unknown --ftype {ftype!r}; expected one of {', '.join(FTYPES)}")
    return key


# ---------------------------------------------------------------------------------------------
# Where a shape comes from: a preset, a config.json, or a GGUF file
# ---------------------------------------------------------------------------------------------

HF_ARCH = {"qwen3": "qwen3", "qwen2": "qwen2", "llama": "llama", "mistral": "llama",
           "gemma3_text": "gemma3", "gemma3": "gemma3"}  # fmt: skip


def from_config(path: Path) -> ModelShape:
    """A Hugging Face config.json (a multimodal gemma3's text_config is used)."""
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PlanError(f"{path}: cannot read a config.json ({err})") from None
    if not isinstance(cfg, dict):
        raise PlanError(f"{path}: expected a JSON object")
    model_type = cfg.get("model_type")
    if isinstance(cfg.get("text_config"), dict):
        tied = cfg.get("tie_word_embeddings", True)
        cfg = {**cfg["text_config"], "tie_word_embeddings": tied, "model_type": model_type}
    if model_type not in HF_ARCH:
        raise PlanError(f"{path}: model_type {model_type!r} is not one of {', '.join(HF_ARCH)}")
    try:
        n_embd, n_head = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
        shape = ModelShape(
            arch=HF_ARCH[model_type],
            n_vocab=int(cfg["vocab_size"]),
            n_embd=n_embd,
            n_ff=int(cfg["intermediate_size"]),
            n_layer=int(cfg["num_hidden_layers"]),
            n_head=n_head,
            n_head_kv=int(cfg.get("num_key_value_heads") or n_head),
            head_dim=int(cfg.get("head_dim") or n_embd // n_head),
            tied=bool(cfg.get("tie_word_embeddings", False)),
            n_ctx_train=int(cfg.get("max_position_embeddings") or 4096),
            rope_freqs=(cfg.get("rope_scaling") or {}).get("rope_type") == "llama3",
        )
    except (KeyError, TypeError, ValueError) as err:
        raise PlanError(f"{path}: missing or invalid hyperparameter {err}") from None
    check_shape(shape, str(path))
    return shape


def check_shape(s: ModelShape, where: str) -> None:
    values = {k: v for k, v in asdict(s).items() if isinstance(v, int) and not isinstance(v, bool)}
    bad = [k for k, v in values.items() if v <= 0]
    if bad:
        raise PlanError(f"{where}: {bad[0]} must be > 0, got {values[bad[0]]}")
    if s.n_head % s.n_head_kv:
        raise PlanError(f"{where}: {s.n_head} heads do not share {s.n_head_kv} KV heads evenly")


def from_gguf(path: Path) -> tuple[ModelShape, str | None]:
    """The shape of a real GGUF file and its file type (when general.file_type names one)."""
    from ggufref.config import ModelConfig
    from ggufref.gguf_file import open_gguf

    f = open_gguf(path)
    c = ModelConfig.from_gguf(f)
    shape = ModelShape(
        arch=c.arch,
        n_vocab=int(f.tensors["token_embd.weight"].shape[0]),
        n_embd=c.n_embd,
        n_ff=c.n_ff,
        n_layer=c.n_layer,
        n_head=c.n_head,
        n_head_kv=c.n_head_kv,
        head_dim=c.head_dim,
        tied="output.weight" not in f.tensors,
        n_ctx_train=c.n_ctx_train,
        rope_freqs="rope_freqs.weight" in f.tensors,
        layer_order=_layer_order(list(f.tensors)),
    )
    ftype_id = f.get("general.file_type")
    return shape, FILE_TYPE_IDS.get(int(ftype_id)) if ftype_id is not None else None


def _layer_order(names: list[str]) -> str:
    seen: list[int] = []
    for n in names:
        if n.startswith("blk.") and (not seen or seen[-1] != int(n.split(".")[1])):
            seen.append(int(n.split(".")[1]))
    return "numeric" if seen == sorted(seen) else "lexicographic"


def resolve(model: str) -> tuple[str, ModelShape, str | None]:
    """(display name, shape, the file's own ftype or None) for a preset, config.json or .gguf."""
    key = ALIASES.get(model.lower(), model.lower())
    if key in PRESETS:
        return key, PRESETS[key], None
    path = Path(model)
    if path.suffix == ".gguf" and path.is_file():
        shape, ftype = from_gguf(path)
        return path.name, shape, ftype
    if path.is_dir() and (path / "config.json").is_file():
        path = path / "config.json"
    if path.suffix == ".json" and path.is_file():
        return str(path), from_config(path), None
    raise PlanError(
        f"{model!r} is neither a preset ({', '.join(PRESETS)}), a config.json nor a .gguf file"
    )


def plan(model: str, ftype: str | None, n_ctx: int, available: int | None) -> dict[str, Any]:
    """Everything `ggufref plan` prints, as plain data (its --json)."""
    name, shape, file_ftype = resolve(model)
    ftype = check_ftype(ftype or file_ftype or "Q4_K_M")
    planned = tensors(shape, ftype)
    mp = memory_plan(shape, ftype, n_ctx).as_dict()
    counts: dict[str, dict[str, int]] = {}
    for t in planned:
        c = counts.setdefault(t.type, {"count": 0, "bytes": 0})
        c["count"] += 1
        c["bytes"] += t.nbytes
    kv = int(mp["kv_cache_bytes"])  # type: ignore[call-overload]
    need = {
        "quantized": int(mp["stored_total"]) + kv,  # type: ignore[call-overload]
        "dequantized": int(mp["fp32_total"]) + kv,  # type: ignore[call-overload]
    }
    return {
        "model": name,
        "ftype": ftype,
        "shape": asdict(shape),
        "type_counts": dict(sorted(counts.items())),
        "memory_plan": mp,
        "available_bytes": available,
        "needs": need,
        "fits": {k: (None if available is None else v <= available) for k, v in need.items()},
        "tensors": [asdict(t) for t in planned],
    }
