"""numba kernels of L_sen's per-sample normalised distance (`calib.saft_loss`): one pass each way.

Rows are samples (N, M). The forward reads both rows once for three float64 sums (a.a, a.b, b.b) from
which the norms, the distance and the normalisation's projection follow; the backward writes
grad_b = b c_b - a c_a with per-row float32 coefficients. Each row is cut into fixed chunks of `CHUNK`
values whose partial sums are added in chunk order (`calib.kernels.split.reduce_chunks`), so the sums do
not depend on the thread count. Only imported through `calib.kernels.distance` (numba is optional).
"""

from __future__ import annotations

import numba
import numpy as np

from calib.kernels.chunks import CHUNK, LANES
from calib.kernels.lanes_numba import lane_totals


@numba.njit(cache=True, nogil=True)
def _sums_chunk(a, a_base, b, b_base, count, sums):  # type: ignore[no-untyped-def]
    # lane j of a (3, LANES) float64 accumulator takes value (block start + j): a loop without a
    # reduction, which LLVM vectorises (see `calib.kernels.split_numba`)
    acc = np.zeros((3, LANES), dtype=np.float64)
    for block in range(0, count, LANES):
        for j in range(min(LANES, count - block)):
            av = np.float64(a[a_base + block + j])
            bv = np.float64(b[b_base + block + j])
            acc[0, j] += av * av
            acc[1, j] += av * bv
            acc[2, j] += bv * bv
    lane_totals(acc, sums)


@numba.njit(parallel=True, cache=True, nogil=True)
def pair_sums(a, a_stride, b, b_stride, m, partial):  # type: ignore[no-untyped-def]
    """partial[row, chunk] = (sum a^2, sum a b, sum b^2) over a chunk of row `row` (m values; row r
    of a starts at r * a_stride, of b at r * b_stride)."""
    chunks = partial.shape[1]
    for task in numba.prange(partial.shape[0] * chunks):
        row, chunk = task // chunks, task % chunks
        start = chunk * CHUNK
        count = min(CHUNK, m - start)
        _sums_chunk(a, row * a_stride + start, b, row * b_stride + start, count, partial[row, chunk])


@numba.njit(cache=True, nogil=True)
def _grad_chunk(a, a_base, b, b_base, out, base, count, ca, cb):  # type: ignore[no-untyped-def]
    for j in range(count):
        out[base + j] = b[b_base + j] * cb - a[a_base + j] * ca


@numba.njit(parallel=True, cache=True, nogil=True)
def distance_grad(a, a_stride, b, b_stride, out, m, c_a, c_b):  # type: ignore[no-untyped-def]
    """out[row] = b[row] c_b[row] - a[row] c_a[row] (float32; rows as `pair_sums`, out dense)."""
    chunks = (m + CHUNK - 1) // CHUNK
    for task in numba.prange(c_a.size * chunks):
        row, chunk = task // chunks, task % chunks
        start = chunk * CHUNK
        count = min(CHUNK, m - start)
        a_base, b_base = row * a_stride + start, row * b_stride + start
        _grad_chunk(a, a_base, b, b_base, out, row * m + start, count, c_a[row], c_b[row])
