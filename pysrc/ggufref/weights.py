"""Stage 3: weights as they sit in the file, and how much memory they need.

Shape convention (said once, here): GGUF writes a tensor's dimensions as ``ne``, fastest-varying
first, so a weight with ``in_features`` columns and ``out_features`` rows is ``ne = [in, out]``.
numpy (and this project) writes shapes slowest-first: ``(rows, cols) = (out_features, in_features)``.
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
        return formats.dequantize(self.qtype, self.data[start:stop]).reshape(stop - start, self.cols)

    def dequantize(self) -> np.ndarray:
        """float32 (rows, cols) through the numpy reference decoder. For tests and small tensors:
        the engine itself never calls this on a weight matrix."""
        return self.dequantize_rows(0, self.rows)
# end::quant_tensor[]
