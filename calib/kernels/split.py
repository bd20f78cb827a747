"""Torch-facing wrappers of the `split` fake quantizer's numba kernels (`calib.kernels.split_numba`)."""

from __future__ import annotations

import numpy as np
import torch

from calib.kernels import flat, match_threads, rows
from calib.kernels.chunks import CHUNK


def _scalars(bp: float, s_d: float, s_o: float, q: int) -> tuple[np.float32, ...]:
    """The kernels' float32 scalars: bp, s_d, s_o, Q and the outlier code minimum -(Q + 1)."""
    return np.float32(bp), np.float32(s_d), np.float32(s_o), np.float32(q), np.float32(-(q + 1))


def split_forward(x: torch.Tensor, bp: float, s_d: float, s_o: float, q: int) -> torch.Tensor:
    """x_hat of float32 CPU `x` (bit for bit `SplitFakeQuant`'s torch forward; contiguous result).

    `x` contiguous, or rows of contiguous values (`calib.kernels.rows`: a channel slice); anything else
    is copied first.
    """
    from calib.kernels import split_numba

    match_threads()
    out = torch.empty(x.shape, dtype=torch.float32)
    if x.numel():
        buf, _, stride, m = rows_or_copy(x)
        split_numba.split_forward(buf, stride, flat(out), m, *_scalars(bp, s_d, s_o, q))
    return out


def split_backward(
    x: torch.Tensor, grad: torch.Tensor, bp: float, s_d: float, s_o: float, q: int
) -> tuple[torch.Tensor, float, float, float]:
    """(grad_x, d/dbp, d/ds_d, d/ds_o) of float32 CPU `x` (laid out as for `split_forward`) and `grad`."""
    from calib.kernels import split_numba

    match_threads()
    grad_x = torch.empty(x.shape, dtype=torch.float32)
    if not x.numel():
        return grad_x, 0.0, 0.0, 0.0
    buf, n, stride, m = rows_or_copy(x)
    partial = np.empty((n * ((m + CHUNK - 1) // CHUNK), 3), dtype=np.float64)
    grad_flat = flat(grad.contiguous())
    split_numba.split_backward(buf, stride, grad_flat, flat(grad_x), m, partial, *_scalars(bp, s_d, s_o, q))
    g_bp, g_sd, g_so = reduce_chunks(partial)
    return grad_x, g_bp, g_sd, g_so


def rows_or_copy(x: torch.Tensor):  # type: ignore[no-untyped-def]
    """`calib.kernels.rows` of `x`, or of a contiguous copy for a layout it does not read."""
    layout = rows(x)
    return layout if layout is not None else rows(x.contiguous())


def reduce_chunks(partial: np.ndarray) -> tuple[float, ...]:
    """Column sums of per-chunk partial sums, added in chunk order (fixed for any thread count)."""
    totals = [0.0] * partial.shape[1]
    for row in partial.tolist():
        totals = [t + v for t, v in zip(totals, row, strict=True)]
    return tuple(totals)
