"""Kernel boundaries found by the sanitizer build (issue 14, class 10).

``ggr_stream_read`` split a buffer into ``n_bytes / 1024`` rounded to pages, which for some
sizes made 1025 tasks and wrote one past its 1024-entry table. Without a sanitizer the extra
write lands in unrelated static memory and the checksum still comes out right, so these tests
prove the fix under ``make test-sanitize`` (AddressSanitizer reports the write) and check the
checksum everywhere.
"""

from __future__ import annotations

import numpy as np
import pytest

from ggufref import kernels

# around the old off-by-one: 4096 * 1024 = 4194304 bytes is where tasks could reach 1025
SIZES = [0, 8, 4095, 4096, 4097, 4194303, 4194304, 4194305, 4194487, 4198400, 4198401, 9_000_001]


@pytest.mark.parametrize("n_bytes", SIZES)
def test_stream_read_checksum_at_task_boundaries(n_bytes: int) -> None:
    rng = np.random.default_rng(n_bytes)
    buf = rng.integers(0, 256, size=n_bytes, dtype=np.uint8)
    words = buf[: n_bytes // 8 * 8].view(np.uint64)  # the probe sums whole 64-bit words
    expected = float(int(words.sum(dtype=np.uint64)))
    assert kernels.stream_read(buf) == expected
