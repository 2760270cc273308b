"""Stage 3: weights as they sit in the file, and how much memory they need.

Shape convention (said once, here): GGUF writes a tensor's dimensions as ``ne``, fastest-varying
first, so a weight with ``in_features`` columns and ``out_features`` rows is ``ne = [in, out]``.
numpy (and this project) writes shapes slowest-first:
``(rows, cols) = (out_features, in_features)``.
``QuantTensor.shape`` is always the numpy order; each row is ``cols / block_elems`` blocks laid
end to end, so a matvec ``y[o] = dot(W[o, :], x)`` walks one row's blocks in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from gguf import GGMLQuantizationType

from ggufref import formats


# tag::quant_tensor[]
@dataclass(frozen=True)
class QuantTensor:
    """A 2-D weight kept in its GGUF blocks.

    qtype: the ggml block format of every row
    shape: (rows, cols) = (out_features, in_features), numpy order
    data:  uint8 (rows, row_bytes), a view of the raw blocks (memory-mapped, never copied)
    """

    qtype: GGMLQuantizationType
    shape: tuple[int, int]
    data: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        rows, cols = self.shape
        layout = formats.layout(self.qtype)
        if cols % layout.block_elems:
            raise ValueError(
                f"{self.name or 'tensor'}: row length {cols} is not a multiple of "
                f"{layout.block_elems} ({layout.name} block size)"
            )
        expected = (rows, layout.row_bytes(cols))
        if self.data.dtype != np.uint8 or self.data.shape != expected:
            raise ValueError(
                f"{self.name or 'tensor'}: raw data is {self.data.dtype} {self.data.shape}, "
                f"expected uint8 {expected} for {layout.name} {self.shape}"
            )

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[1]

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def dequantize_rows(self, start: int, stop: int) -> np.ndarray:
        """float32 (stop - start, cols): decode a few rows (an embedding lookup, a test)."""
        return formats.dequantize(self.qtype, self.data[start:stop]).reshape(
            stop - start, self.cols
        )

    def embed_rows(self, tokens: np.ndarray) -> np.ndarray:
        """tokens (n,) -> float32 (n, cols): decode just these rows (an embedding lookup)."""
        return formats.dequantize(self.qtype, self.data[tokens]).reshape(len(tokens), self.cols)

    def dequantize(self) -> np.ndarray:
        """float32 (rows, cols) through the numpy reference decoder. For tests and small tensors:
        the engine itself never calls this on a weight matrix."""
        return self.dequantize_rows(0, self.rows)


# end::quant_tensor[]


# ---------------------------------------------------------------------------------------------
# Memory plan: what stays resident, and what FP32 would have cost
# ---------------------------------------------------------------------------------------------

GROUPS = ("embeddings", "attention", "ffn", "norms", "output", "other")


def tensor_group(name: str) -> str:
    """Which part of the model a tensor belongs to, from its GGUF name."""
    if name.startswith("token_embd"):
        return "embeddings"
    if "norm" in name:
        return "norms"
    if name.startswith("output"):
        return "output"
    if ".attn_" in name:
        return "attention"
    if ".ffn_" in name:
        return "ffn"
    return "other"


@dataclass
class GroupPlan:
    group: str
    tensors: int = 0
    stored_bytes: int = 0  # resident as stored: the mapped GGUF blocks
    fp32_bytes: int = 0  # what a dequantized FP32 copy would take


# tag::kv_cache_bytes[]
def kv_cache_bytes(
    n_layer: int, n_head_kv: int, head_dim: int, head_dim_v: int, n_ctx: int, elem_bytes: int = 4
) -> int:
    """Bytes of a KV cache: K (n_layer, n_head_kv, n_ctx, head_dim) + V (..., head_dim_v).

    The one formula behind `inspect`, `plan` and the engine's memory check. elem_bytes 4 is our
    float32 cache; 2 is llama.cpp's default fp16 cache. Every layer holds all n_ctx positions,
    sliding-window layers included (neither engine shrinks those).
    """
    return elem_bytes * n_layer * n_head_kv * n_ctx * (head_dim + head_dim_v)


# end::kv_cache_bytes[]


# tag::memory_plan[]
@dataclass
class MemoryPlan:
    """Bytes per tensor group as stored vs as FP32, plus the KV cache for a context length."""

    groups: list[GroupPlan]
    n_ctx: int
    kv_cache_bytes: int  # our cache: float32 K and V, (n_layer, n_head_kv, n_ctx, head_dim) each
    kv_cache_bytes_f16: int  # the same cache at llama.cpp's default fp16

    @classmethod
    def build(
        cls,
        tensors: dict[str, tuple[int, int]],
        n_layer: int,
        n_head_kv: int,
        head_dim: int,
        head_dim_v: int,
        n_ctx: int,
    ) -> MemoryPlan:
        """tensors: name -> (stored bytes, element count)."""
        groups = {g: GroupPlan(g) for g in GROUPS}
        for name, (nbytes, n_elems) in tensors.items():
            g = groups[tensor_group(name)]
            g.tensors += 1
            g.stored_bytes += nbytes
            g.fp32_bytes += 4 * n_elems
        kv = (n_layer, n_head_kv, head_dim, head_dim_v, n_ctx)
        return cls(
            [g for g in groups.values() if g.tensors],
            n_ctx,
            kv_cache_bytes(*kv, elem_bytes=4),
            kv_cache_bytes(*kv, elem_bytes=2),
        )

    @property
    def stored_total(self) -> int:
        return sum(g.stored_bytes for g in self.groups)

    @property
    def fp32_total(self) -> int:
        return sum(g.fp32_bytes for g in self.groups)

    # end::memory_plan[]

    def as_dict(self) -> dict[str, object]:
        return {
            "groups": [vars(g) for g in self.groups],
            "n_ctx": self.n_ctx,
            "kv_cache_bytes": self.kv_cache_bytes,
            "kv_cache_bytes_f16": self.kv_cache_bytes_f16,
            "stored_total": self.stored_total,
            "fp32_total": self.fp32_total,
            "resident_total": self.stored_total + self.kv_cache_bytes,
        }
