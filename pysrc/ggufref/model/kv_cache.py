"""Stage 6b: the KV cache — keys and values of every past position, preallocated once.

Layout: k, v float32 (n_layer, n_head_kv, n_ctx, head_dim). A head's positions are contiguous, so
attention for one head reads one (c, hd) slab. Values are stored rounded to fp16 precision, the
precision of llama.cpp's default fp16 cache, so both engines attend over the same numbers.
"""

from __future__ import annotations

import math
import mmap

import numpy as np

from ggufref.errors import ModelError
from ggufref.model.ops import to_f16_precision
from ggufref.weights import kv_cache_bytes


def lazy_zeros(shape: tuple[int, ...]) -> np.ndarray:
    """float32 zeros whose memory becomes resident only where it is written.

    np.zeros gets lazily-zeroed pages too, but the kernel backs large anonymous allocations with
    2 MiB huge pages: the first position written in each layer would make a whole 1 MiB slab of
    that layer resident. Opting out of huge pages keeps the cache's footprint proportional to the
    positions actually used.
    """
    n = math.prod(shape)
    buf = mmap.mmap(-1, max(4 * n, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, dtype=np.float32, count=n).reshape(shape)


# tag::kv_cache[]
class KVCache:
    def __init__(self, n_layer: int, n_head_kv: int, n_ctx: int, head_dim: int, head_dim_v: int):
        self.n_ctx = n_ctx
        self.k = lazy_zeros((n_layer, n_head_kv, n_ctx, head_dim))
        self.v = lazy_zeros((n_layer, n_head_kv, n_ctx, head_dim_v))
        self.n_past = 0  # positions 0..n_past-1 hold valid entries

    def store(self, layer: int, pos0: int, k: np.ndarray, v: np.ndarray) -> None:
        """k (n, h_kv, hd), v (n, h_kv, hd_v) for positions pos0 .. pos0+n-1."""
        n = k.shape[0]
        if pos0 + n > self.n_ctx:
            raise ModelError(f"context full: position {pos0 + n} exceeds n_ctx {self.n_ctx}")
        self.k[layer, :, pos0 : pos0 + n] = to_f16_precision(k).transpose(1, 0, 2)
        self.v[layer, :, pos0 : pos0 + n] = to_f16_precision(v).transpose(1, 0, 2)

    def view(self, layer: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(k, v) of one layer for positions 0..end-1: (h_kv, end, hd) each, no copy."""
        return self.k[layer, :, :end], self.v[layer, :, :end]

    @staticmethod
    def bytes_for(n_layer: int, n_head_kv: int, n_ctx: int, head_dim: int, head_dim_v: int) -> int:
        """What __init__ will allocate, before allocating it (see weights.kv_cache_bytes)."""
        return kv_cache_bytes(n_layer, n_head_kv, head_dim, head_dim_v, n_ctx)

    @property
    def nbytes(self) -> int:
        return int(self.k.nbytes + self.v.nbytes)

    # end::kv_cache[]

    def truncate(self, n: int) -> None:
        """Forget positions n.. (a chat turn that shares a prefix reuses positions 0..n-1)."""
        self.n_past = min(self.n_past, n)
