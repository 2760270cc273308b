"""The architectures ggufref runs: one table, read by the loader, config, model and tests.

Adding an architecture starts here (docs how-to/add-architecture): its row says which metadata
keys must be present and which have defaults, how RoPE pairs dimensions, which forward pass runs
it, which built-in chat template fits when the file has none, and which synthetic vocabulary its
test model gets. Tensor names are llama.cpp's (``blk.N.attn_q.weight`` ...), listed once below.
"""

from __future__ import annotations

from dataclasses import dataclass

# Keys every model must carry, under the ``{arch}.`` prefix.
REQUIRED_KEYS = (
    "context_length",
    "embedding_length",
    "block_count",
    "feed_forward_length",
    "attention.head_count",
    "attention.layer_norm_rms_epsilon",
)
# Optional keys and the value a missing one means (None: derived from other keys, see config).
DEFAULTS: dict[str, float | int | None] = {
    "attention.head_count_kv": None,  # = head_count (no grouped-query attention)
    "attention.key_length": None,  # = embedding_length / head_count
    "attention.value_length": None,  # = key_length
    "rope.freq_base": 10000.0,
    "rope.scaling.factor": 1.0,
    "sliding_window": 0,  # attention.sliding_window, read where the table row says so
}
# Per-layer tensors (``blk.N.<name>.weight``): required, then present only in some families.
LAYER_TENSORS = (
    "attn_norm",
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_norm",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
)
OPTIONAL_LAYER_TENSORS = (
    "attn_q.bias",  # qwen2
    "attn_k.bias",
    "attn_v.bias",
    "attn_q_norm",  # qwen3, gemma3
    "attn_k_norm",
    "post_attention_norm",  # gemma3
    "post_ffw_norm",
)
# Whole-model tensors; ``output`` absent means tied to ``token_embd``.
MODEL_TENSORS = ("token_embd", "output_norm", "output")


# tag::architecture[]
@dataclass(frozen=True)
class Architecture:
    name: str  # general.architecture
    rope: str  # "normal" rotates (x[2i], x[2i+1]); "neox" rotates (x[i], x[i + d/2])
    forward: str  # module in ggufref.model with the forward pass
    template: str  # built-in chat template family for files without one
    test_vocab: str  # ggufref.testing.vocab kind for the synthetic test model
    sliding_window: bool = False  # reads attention.sliding_window (5 local layers in 6)


ARCHITECTURES = {
    a.name: a
    for a in (
        Architecture("llama", "normal", "llama", "llama3", "bpe-llama3"),
        Architecture("mistral", "normal", "llama", "chatml", "spm-llama2"),
        Architecture("qwen2", "neox", "llama", "chatml", "bpe-qwen2"),
        Architecture("qwen3", "neox", "llama", "chatml", "bpe-qwen2"),
        Architecture("gemma3", "neox", "gemma3", "gemma", "spm", sliding_window=True),
    )
}
# end::architecture[]

SUPPORTED = tuple(ARCHITECTURES)

# Architectures the engine does not run whose files can still be chatted with through a
# built-in template (ggufref.chat reads the family here): name -> template family.
TEMPLATE_ALIASES: dict[str, str] = {
    "gemma": "gemma",
    "gemma2": "gemma",
    "gemma3n": "gemma",
    "qwen2moe": "chatml",
    "qwen3moe": "chatml",
}


def template_family(name: str) -> str | None:
    """The built-in chat template family of architecture ``name``: its row's, else its alias's;
    None for an architecture in neither."""
    if name in ARCHITECTURES:
        return ARCHITECTURES[name].template
    return TEMPLATE_ALIASES.get(name)
