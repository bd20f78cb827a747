"""numba kernels of the `b-bit` dual-region fake quantizer (`calib.quantizers.dual_region._BBitFakeQuant`).

The same float32 operations in the same order as the torch reference (forward bit for bit; no fastmath);
the backward writes grad_x and per-task float64 sums of the four parameter gradients, in a fixed order
for any thread count (the scheme of `calib.kernels.split_numba`). Only imported through
`calib.kernels.bbit` (numba is optional).
"""

from __future__ import annotations

import numba
import numpy as np

from calib.kernels.chunks import CHUNK, FLUSH, LANES
from calib.kernels.lanes_numba import flush, lane_totals
from calib.kernels.split_numba import _clip

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@numba.njit(cache=True, nogil=True)
def _forward_chunk(x, x_base, out, base, count, bp, s_d, s_p, s_n, d, p, n, has_neg):  # type: ignore[no-untyped-def]
    neg_s_n = -s_n
    for j in range(count):
        xi = x[x_base + j]
        if xi != xi:  # NaN encodes as code 0
            xi = _F0
        kd = np.rint(_clip(xi / s_d, -d, d))
        kp = np.rint(_clip((xi - bp) / s_p, _F0, p))
        t_p = min(kp, _F1)
        value = (kp * s_p + bp) * t_p
        dense_w = _F1 - t_p
        if has_neg:
            kn = np.rint(_clip((xi + bp) / neg_s_n, _F0, n))
            t_n = min(kn, _F1)
            value = value - (kn * s_n + bp) * t_n
            dense_w = dense_w - t_n
        out[base + j] = kd * s_d * dense_w + value


@numba.njit(parallel=True, cache=True, nogil=True)
def bbit_forward(x, x_stride, out, m, bp, s_d, s_p, s_n, d, p, n, has_neg):  # type: ignore[no-untyped-def]
    """x_hat of rows of m values (row r of x at r * x_stride, of out at r * m); see the module docstring."""
    chunks = (m + CHUNK - 1) // CHUNK
    for task in numba.prange((out.size // m) * chunks):
        row, start = task // chunks, (task % chunks) * CHUNK
        count = min(CHUNK, m - start)
        x_base, base = row * x_stride + start, row * m + start
        _forward_chunk(x, x_base, out, base, count, bp, s_d, s_p, s_n, d, p, n, has_neg)


@numba.njit(inline="always")
def _grid(v, lo, hi):  # type: ignore[no-untyped-def]
    """(code, rounding-error term k - r v, r) of offset v on the grid [lo, hi]."""
    vc = _clip(v, lo, hi)
    r = _F1 if vc == v else _F0
    k = np.rint(vc)
    return k, k - vc * r, r


@numba.njit(inline="always")
def _backward_terms(xi, gi, bp, s_d, s_p, s_n, d, p, n, has_neg):  # type: ignore[no-untyped-def]
    """(d/dx, g, and the terms of d/dbp, d/ds_d, d/ds_p, d/ds_n before their g factor) of one value."""
    if xi != xi:
        return _F0, _F0, _F0, _F0, _F0, _F0
    m_p = _F1 if xi > bp else _F0
    m_n = _F1 if xi < -bp else _F0
    m_d = _F1 - m_p - m_n
    kd, err_d, r_d = _grid(xi / s_d, -d, d)
    kp, err_p, r_p = _grid((xi - bp) / s_p, _F0, p)
    t_p = min(kp, _F1)
    grad_x = gi * m_d * r_d + gi * m_p * r_p
    t_bp = m_p * (t_p - r_p)
    t_sd = m_d * err_d + m_p * d * (_F1 - t_p) - m_n * d
    t_sn = _F0
    if has_neg:
        kn, err_n, r_n = _grid((xi + bp) / (-s_n), _F0, n)
        t_n = min(kn, _F1)
        grad_x = grad_x + gi * m_n * r_n
        t_bp = t_bp - m_n * (t_n - r_n)
        t_sd = t_sd + m_n * d * t_n
        t_sn = -(m_n * err_n)
    return grad_x, gi, t_bp, t_sd, m_p * err_p, t_sn


@numba.njit(cache=True, nogil=True)
def _backward_block(x, x_base, g, grad_x, base, lanes, count, bp, s_d, s_p, s_n, d, p, n, has_neg):  # type: ignore[no-untyped-def]
    for j in range(count):
        i = base + j
        gx, gi, t_bp, t_sd, t_sp, t_sn = _backward_terms(
            x[x_base + j], g[i], bp, s_d, s_p, s_n, d, p, n, has_neg
        )
        grad_x[i] = gx
        lanes[0, j] += gi * t_bp
        lanes[1, j] += gi * t_sd
        lanes[2, j] += gi * t_sp
        lanes[3, j] += gi * t_sn


@numba.njit(cache=True, nogil=True)
def _backward_chunk(x, x_base, g, grad_x, base, count, sums, grid):  # type: ignore[no-untyped-def]
    bp, s_d, s_p, s_n, d, p, n, has_neg = grid
    acc = np.zeros((4, LANES), dtype=np.float64)
    lanes = np.zeros((4, LANES), dtype=np.float32)
    done = 0
    while done < count:
        span = min(FLUSH * LANES, count - done)
        for block in range(done, done + span, LANES):
            size = min(LANES, done + span - block)
            _backward_block(
                x, x_base + block, g, grad_x, base + block, lanes, size, bp, s_d, s_p, s_n, d, p, n, has_neg
            )
        flush(acc, lanes)
        done += span
    lane_totals(acc, sums)


@numba.njit(parallel=True, cache=True, nogil=True)
def bbit_backward(x, x_stride, g, grad_x, m, partial, bp, s_d, s_p, s_n, d, p, n, has_neg):  # type: ignore[no-untyped-def]
    """grad_x and partial[task] = (d/dbp, d/ds_d, d/ds_p, d/ds_n) per (row, chunk) task."""
    chunks = (m + CHUNK - 1) // CHUNK
    grid = (bp, s_d, s_p, s_n, d, p, n, has_neg)
    for task in numba.prange(partial.shape[0]):
        row, start = task // chunks, (task % chunks) * CHUNK
        count = min(CHUNK, m - start)
        _backward_chunk(x, row * x_stride + start, g, grad_x, row * m + start, count, partial[task], grid)
