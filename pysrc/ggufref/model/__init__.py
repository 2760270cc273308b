"""Stage 6: transformer forward passes (llama family and gemma3), KV cache, small ops."""

from ggufref.model.base import LayerWeights, Model

__all__ = ["LayerWeights", "Model"]
