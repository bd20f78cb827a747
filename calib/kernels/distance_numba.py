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


@numba.njit(cache=True, nogil=True)
def _sums_chunk(a, b, partial, row, chunk):  # type: ignore[no-untyped-def]
    # lane j of a (3, LANES) float64 accumulator takes value (block start + j): a loop without a
    # reduction, which LLVM vectorises (see `calib.kernels.split_numba`)
    acc = np.zeros((3, LANES), dtype=np.float64)
    m = a.shape[1]
    stop = min((chunk + 1) * CHUNK, m)
    for start in range(chunk * CHUNK, stop, LANES):
        for j in range(min(LANES, stop - start)):
            av = np.float64(a[row, start + j])
            bv = np.float64(b[row, start + j])
            acc[0, j] += av * av
            acc[1, j] += av * bv
            acc[2, j] += bv * bv
    for k in range(3):
        total = 0.0
        for lane in range(LANES):
            total += acc[k, lane]
        partial[row, chunk, k] = total


@numba.njit(parallel=True, cache=True, nogil=True)
def pair_sums(a, b, partial):  # type: ignore[no-untyped-def]
    """partial[row, chunk] = (sum a^2, sum a b, sum b^2) over the chunk of (N, M) float32 rows."""
    chunks = partial.shape[1]
    for task in numba.prange(a.shape[0] * chunks):
        _sums_chunk(a, b, partial, task // chunks, task % chunks)


@numba.njit(cache=True, nogil=True)
def _grad_chunk(a, b, grad_b, c_a, c_b, row, chunk):  # type: ignore[no-untyped-def]
    ca = c_a[row]
    cb = c_b[row]
    for i in range(chunk * CHUNK, min((chunk + 1) * CHUNK, a.shape[1])):
        grad_b[row, i] = b[row, i] * cb - a[row, i] * ca


@numba.njit(parallel=True, cache=True, nogil=True)
def distance_grad(a, b, grad_b, c_a, c_b):  # type: ignore[no-untyped-def]
    """grad_b[row] = b[row] c_b[row] - a[row] c_a[row] (float32)."""
    chunks = (a.shape[1] + CHUNK - 1) // CHUNK
    for task in numba.prange(a.shape[0] * chunks):
        _grad_chunk(a, b, grad_b, c_a, c_b, task // chunks, task % chunks)
