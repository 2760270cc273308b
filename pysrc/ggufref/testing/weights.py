"""Random weight matrices with valid blocks, for the kernel tests and the kernel benchmark."""

from __future__ import annotations

import numpy as np
from gguf import GGMLQuantizationType as T

from ggufref import formats
from ggufref.weights import QuantTensor

FLOAT_FORMATS = (T.F32, T.F16, T.BF16)


def random_weight(
    qtype: T, rows: int, cols: int, seed: int | np.random.Generator = 0
) -> QuantTensor:
    """Random valid blocks: random bytes with every half-precision scale set to a small value
    (float formats: normal values). Also the kernel tests' weights."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lay = formats.layout(qtype)
    if qtype in FLOAT_FORMATS:
        v = rng.standard_normal((rows, cols), dtype=np.float32)
        if qtype == T.F32:
            raw: np.ndarray = v
        elif qtype == T.F16:
            raw = v.astype(np.float16)
        else:  # BF16: the top half of each float32
            raw = (v.view(np.uint32) >> 16).astype(np.uint16)
        return QuantTensor(qtype, (rows, cols), raw.view(np.uint8).reshape(rows, -1))
    nb = cols // lay.block_elems
    raw = rng.integers(0, 256, (rows, nb, lay.block_bytes), dtype=np.uint8)
    for f in lay.fields:
        if f.dtype == "f2":
            start = lay.offsets()[f.name]
            scale = rng.uniform(1e-3, 1e-2, (rows, nb, f.count)).astype(np.float16)
            raw[:, :, start : start + 2 * f.count] = scale.view(np.uint8).reshape(rows, nb, -1)
    return QuantTensor(qtype, (rows, cols), raw.reshape(rows, -1))
