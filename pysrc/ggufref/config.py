"""Stage 2b: per-architecture hyperparameters read from GGUF metadata.

Every number the forward pass needs comes from here; ``model/`` never reads metadata itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ggufref import arch
from ggufref.arch import ARCHITECTURES, DEFAULTS
from ggufref.errors import ModelError
from ggufref.gguf_file import GGUFFile

SUPPORTED_ARCHS = arch.SUPPORTED  # the architecture table lives in ggufref.arch
ROPE_PAIRING = {name: a.rope for name, a in arch.ARCHITECTURES.items()}


# Hyperparameter keys (after the "<arch>." prefix), in the order `inspect` shows them, and the
# type each must have: a file may store anything under any key, and `inspect` reads these before
# ModelConfig does.
HYPERPARAMETERS: dict[str, type] = {
    "context_length": int,
    "embedding_length": int,
    "block_count": int,
    "feed_forward_length": int,
    "attention.head_count": int,
    "attention.head_count_kv": int,
    "attention.key_length": int,
    "attention.value_length": int,
    "attention.layer_norm_rms_epsilon": float,
    "attention.sliding_window": int,
    "rope.freq_base": float,
    "rope.dimension_count": int,
    "rope.scaling.factor": float,
}
MAX_HYPERPARAMETER = 2**31 - 1  # every size must fit a C int


def check_hyperparameter_types(f: GGUFFile) -> None:
    """Each hyperparameter present is an int in 0..2**31-1 or a finite number (one-line error)."""
    for suffix, kind in HYPERPARAMETERS.items():
        key = f.arch_key(suffix)
        if key not in f:
            continue
        value = f.get(key)
        if kind is int:
            ok = type(value) is int and 0 <= value <= MAX_HYPERPARAMETER
            expected = f"an integer in 0..{MAX_HYPERPARAMETER}"
        else:
            ok = type(value) in (int, float) and math.isfinite(value)
            expected = "a finite number"
        if not ok:
            raise ModelError(
                f"{f.path}: metadata key {key}: found {value!r:.40}, expected {expected}"
            )


def attention_dims(f: GGUFFile, n_head: int, n_embd: int) -> tuple[int, int, int]:
    """(n_head_kv, head_dim, head_dim_v) from the optional attention keys, or what their absence
    means (arch.DEFAULTS): no grouped-query attention, the residual width split evenly over the
    heads, values as wide as keys. The one derivation: ModelConfig and gguf_file.memory_plan
    both call it."""
    head_dim = f.get_int(f.arch_key("attention.key_length"), n_embd // max(n_head, 1))
    n_head_kv = f.get_int(f.arch_key("attention.head_count_kv"), n_head)
    head_dim_v = f.get_int(f.arch_key("attention.value_length"), head_dim)
    return n_head_kv, head_dim, head_dim_v


# tag::model_config[]
@dataclass(frozen=True)
class ModelConfig:
    arch: str
    n_vocab: int
    n_ctx_train: int  # context length the model was trained with
    n_embd: int  # width of the residual stream
    n_layer: int
    n_head: int  # query heads
    n_head_kv: int  # key/value heads (grouped-query attention when < n_head)
    head_dim: int  # per-head width of Q and K
    head_dim_v: int  # per-head width of V
    n_ff: int  # hidden width of the feed-forward block
    rms_eps: float
    rope_base: float  # RoPE theta for global layers
    rope_base_local: float  # RoPE theta for sliding-window layers (gemma3)
    rope_neox: bool
    rope_freq_scale: float = 1.0
    sliding_window: int = 0  # 0 = every layer attends to the whole context
    swa_layers: tuple[bool, ...] = field(default=())  # per layer: uses the sliding window
    attn_scale: float = 0.0  # multiplies Q before Q.K (1/sqrt(head_dim) unless said otherwise)
    tied_output: bool = False  # logits come from token_embd (no output.weight)
    # end::model_config[]

    @property
    def kv_dim(self) -> int:
        return self.n_head_kv * self.head_dim

    @classmethod
    def from_gguf(cls, f: GGUFFile) -> ModelConfig:
        arch = f.arch
        if arch not in SUPPORTED_ARCHS:
            raise ModelError(
                f"{f.path}: architecture {arch!r} is not supported; "
                f"supported: {', '.join(SUPPORTED_ARCHS)}"
            )
        check_hyperparameter_types(f)
        n_embd = f.get_int(f.arch_key("embedding_length"))
        n_head = f.get_int(f.arch_key("attention.head_count"))
        n_layer = f.get_int(f.arch_key("block_count"))
        n_head_kv, head_dim, head_dim_v = attention_dims(f, n_head, n_embd)
        check_hyperparameters(
            str(f.path),
            n_head,
            n_head_kv,
            head_dim,
            n_layer,
            n_embd,
            f.get_int(f.arch_key("feed_forward_length")),
        )
        blocks_in_file = 1 + max(
            (
                int(n.split(".")[1])
                for n in f.tensors
                if n.startswith("blk.") and n.split(".")[1].isdigit()
            ),
            default=-1,
        )
        if n_layer > blocks_in_file:  # checked before anything is sized by n_layer
            raise ModelError(
                f"{f.path}: block_count is {n_layer} but the file has tensors for "
                f"{blocks_in_file} blocks"
            )
        n_vocab = f.array_len("tokenizer.ggml.tokens") or f.tensor("token_embd.weight").shape[0]
        window = 0
        if ARCHITECTURES[arch].sliding_window:
            window = f.get_int(f.arch_key("attention.sliding_window"), DEFAULTS["sliding_window"])
        # gemma3: five sliding-window layers, then one global layer, repeating.
        swa = tuple(window > 0 and (i % 6) < 5 for i in range(n_layer))
        scale = f.get_float(f.arch_key("rope.scaling.factor"), DEFAULTS["rope.scaling.factor"])
        cfg = cls(
            arch=arch,
            n_vocab=n_vocab,
            n_ctx_train=f.get_int(f.arch_key("context_length")),
            n_embd=n_embd,
            n_layer=n_layer,
            n_head=n_head,
            n_head_kv=n_head_kv,
            head_dim=head_dim,
            head_dim_v=head_dim_v,
            n_ff=f.get_int(f.arch_key("feed_forward_length")),
            rms_eps=f.get_float(f.arch_key("attention.layer_norm_rms_epsilon")),
            rope_base=f.get_float(f.arch_key("rope.freq_base"), DEFAULTS["rope.freq_base"]),
            rope_base_local=10000.0,
            rope_neox=ROPE_PAIRING[arch] == "neox",
            rope_freq_scale=1.0 / scale if scale else 1.0,
            sliding_window=window,
            swa_layers=swa,
            attn_scale=1.0 / math.sqrt(head_dim),
            tied_output="output.weight" not in f.tensors,
        )
        for name, value in (
            ("layer_norm_rms_epsilon", cfg.rms_eps),
            ("rope.freq_base", cfg.rope_base),
        ):
            if not (math.isfinite(value) and value > 0):
                raise ModelError(f"{f.path}: {name} is {value}, expected a finite number > 0")
        return cfg


def check_hyperparameters(
    where: str, n_head: int, n_head_kv: int, head_dim: int, n_layer: int, n_embd: int, n_ff: int
) -> None:
    """Sizes that would divide by zero or index out of range later are refused here, in order
    (each check may rely on the ones before it)."""
    checks = [
        (lambda: min(n_head, n_head_kv, head_dim) > 0, "head counts and head size must be > 0"),
        (lambda: n_head % n_head_kv == 0, "head_count must be a multiple of head_count_kv"),
        (lambda: head_dim % 2 == 0, "head dimension must be even for RoPE"),
        (
            lambda: min(n_layer, n_embd, n_ff) > 0,
            "block_count, embedding and FFN sizes must be > 0",
        ),
    ]
    for ok, what in checks:
        if not ok():
            raise ModelError(
                f"{where}: {what} (n_head={n_head}, n_head_kv={n_head_kv}, "
                f"head_dim={head_dim}, n_layer={n_layer}, n_embd={n_embd}, "
                f"n_ff={n_ff})"
            )
