"""Lane accumulators shared by the numba kernels: per-lane sums added in a fixed order.

A kernel adds value j of a block to lane j (a loop without a reduction, which LLVM vectorises; a running
sum it may not reorder without fastmath), in float32 lanes moved into float64 ones every FLUSH blocks.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def flush(acc, lanes):  # type: ignore[no-untyped-def]
    """acc += lanes (float64 += float32), then lanes = 0."""
    for k in range(acc.shape[0]):
        for lane in range(acc.shape[1]):
            acc[k, lane] += np.float64(lanes[k, lane])
            lanes[k, lane] = np.float32(0.0)


@numba.njit(cache=True, nogil=True)
def lane_totals(acc, sums):  # type: ignore[no-untyped-def]
    """sums[k] = the lanes of acc[k] added in lane order."""
    for k in range(acc.shape[0]):
        total = 0.0
        for lane in range(acc.shape[1]):
            total += acc[k, lane]
        sums[k] = total
