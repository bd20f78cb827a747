"""numba kernels of the `split` fake quantizer: one pass over memory for the forward and the backward.

Same float32 arithmetic as `calib.quantizers.split_node`'s torch reference (true float32 divisions,
round half to even, + 0.0 on each code, each product and sum rounded separately; no fastmath), so the
forward is bit for bit the reference's. The backward writes grad_x and, per fixed chunk of `CHUNK`
values, float64 partial sums of the three parameter gradients; `calib.kernels.reduce_chunks` adds them
in chunk order, so the sums do not depend on the thread count.

Only imported through `calib.kernels.split_kernels` (numba is optional).
"""

from __future__ import annotations

import numba
import numpy as np

from calib.kernels.chunks import CHUNK, FLUSH, LANES
from calib.kernels.lanes_numba import flush, lane_totals

_F0 = np.float32(0.0)
_F1 = np.float32(1.0)


@numba.njit(inline="always")
def _clip(v, lo, hi):  # type: ignore[no-untyped-def]
    # torch.clamp's semantics: NaN stays NaN (both comparisons are false)
    if v > hi:
        return hi
    if v < lo:
        return lo
    return v


@numba.njit(cache=True, nogil=True)
def _forward_chunk(x, x_base, out, out_base, count, bp, s_d, s_o, q_hi, o_lo):  # type: ignore[no-untyped-def]
    n_bp = -bp
    q_lo = -q_hi
    for j in range(count):
        xi = x[x_base + j]
        c = _clip(xi, n_bp, bp)
        dense = (np.rint(_clip(c / s_d, q_lo, q_hi)) + _F0) * s_d
        outlier = (np.rint(_clip((xi - c) / s_o, o_lo, q_hi)) + _F0) * s_o
        out[out_base + j] = dense + outlier


@numba.njit(parallel=True, cache=True, nogil=True)
def split_forward(x, x_stride, out, m, bp, s_d, s_o, q_hi, o_lo):  # type: ignore[no-untyped-def]
    """out = round(clip(c / s_d, -Q, Q)) s_d + round(clip((x - c) / s_o, o_lo, Q)) s_o, c = clip(x, +-bp).

    Rows of m values: row r of x starts at r * x_stride, of out at r * m (see `calib.kernels.rows`).
    """
    chunks = (m + CHUNK - 1) // CHUNK
    for task in numba.prange((out.size // m) * chunks):
        row, start = task // chunks, (task % chunks) * CHUNK
        count = min(CHUNK, m - start)
        _forward_chunk(x, row * x_stride + start, out, row * m + start, count, bp, s_d, s_o, q_hi, o_lo)


@numba.njit(inline="always")
def _backward_terms(xi, gi, bp, n_bp, s_d, s_o, q_lo, q_hi, o_lo):  # type: ignore[no-untyped-def]
    """(d/dx, g, and the float32 terms of d/dbp, d/ds_d, d/ds_o before their g factor) of one value."""
    if xi != xi:  # NaN gets no gradient and adds nothing to the parameter sums
        return _F0, _F0, _F0, _F0, _F0
    c = _clip(xi, n_bp, bp)
    res = xi - c
    v_d = c / s_d
    vc_d = _clip(v_d, q_lo, q_hi)
    r_d = _F1 if vc_d == v_d else _F0
    v_o = res / s_o
    vc_o = _clip(v_o, o_lo, q_hi)
    r_o = _F1 if vc_o == v_o else _F0
    outer = _F1 if res > _F0 else (-_F1 if res < _F0 else _F0)
    err_d = np.rint(vc_d) - vc_d * r_d
    err_o = np.rint(vc_o) - vc_o * r_o
    return gi * (r_d if res == _F0 else r_o), gi, (r_d - r_o) * outer, err_d, err_o


@numba.njit(cache=True, nogil=True)
def _backward_block(x, x_base, g, grad_x, base, lanes, count, bp, s_d, s_o, q_hi, o_lo):  # type: ignore[no-untyped-def]
    # value j adds its float32 terms to lane j: a loop without a reduction, which LLVM vectorises (a
    # running sum it may not reorder without fastmath)
    n_bp = -bp
    q_lo = -q_hi
    for j in range(count):
        i = base + j
        gx, gi, t_bp, t_sd, t_so = _backward_terms(x[x_base + j], g[i], bp, n_bp, s_d, s_o, q_lo, q_hi, o_lo)
        grad_x[i] = gx
        lanes[0, j] += gi * t_bp
        lanes[1, j] += gi * t_sd
        lanes[2, j] += gi * t_so


@numba.njit(cache=True, nogil=True)
def _backward_chunk(x, x_base, g, grad_x, base, count, sums, bp, s_d, s_o, q_hi, o_lo):  # type: ignore[no-untyped-def]
    # float32 lanes sum FLUSH blocks, then move into float64 lanes; the float64 lanes are added in
    # order at the end. A fixed order for any thread count.
    acc = np.zeros((3, LANES), dtype=np.float64)
    lanes = np.zeros((3, LANES), dtype=np.float32)
    done = 0
    while done < count:
        span = min(FLUSH * LANES, count - done)
        for block in range(done, done + span, LANES):
            n = min(LANES, done + span - block)
            _backward_block(x, x_base + block, g, grad_x, base + block, lanes, n, bp, s_d, s_o, q_hi, o_lo)
        flush(acc, lanes)
        done += span
    lane_totals(acc, sums)


@numba.njit(parallel=True, cache=True, nogil=True)
def split_backward(x, x_stride, g, grad_x, m, partial, bp, s_d, s_o, q_hi, o_lo):  # type: ignore[no-untyped-def]
    """grad_x and per-task float64 sums partial[task] = (d/dbp, d/ds_d, d/ds_o); rows as `split_forward`.

    The STE rules of `calib.quantizers.split_node`, in a fixed order of additions per task (row, chunk),
    so the sums do not depend on the thread count. (Chunks are separate functions: the loops inside a
    prange body are not vectorised.)
    """
    chunks = (m + CHUNK - 1) // CHUNK
    for task in numba.prange(partial.shape[0]):
        row, start = task // chunks, (task % chunks) * CHUNK
        count = min(CHUNK, m - start)
        x_base, base = row * x_stride + start, row * m + start
        _backward_chunk(x, x_base, g, grad_x, base, count, partial[task], bp, s_d, s_o, q_hi, o_lo)
