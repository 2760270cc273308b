"""ggufref: a reference engine for quantized LLMs, from GGUF bytes to generated tokens.

Pipeline order (and module order):
gguf_file -> config -> weights -> formats -> kernels -> model -> tokenizer -> sampling
-> generate -> chat -> tools -> cli
"""

from ggufref.errors import GGUFError, GgufrefError, ModelError, TemplateError, ToolCallError

__version__ = "0.1.0"

__all__ = ["GGUFError", "GgufrefError", "ModelError", "TemplateError", "ToolCallError"]
