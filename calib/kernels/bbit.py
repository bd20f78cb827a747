"""Torch-facing wrappers of the `b-bit` fake quantizer's numba kernels (`calib.kernels.bbit_numba`)."""

from __future__ import annotations

import numpy as np
import torch

from calib.kernels import flat, match_threads
from calib.kernels.chunks import CHUNK
from calib.kernels.split import reduce_chunks, rows_or_copy


def _grid(bp: float, s_d: float, s_p: float, s_n: float, split: tuple[int, int, int]) -> tuple:  # type: ignore[type-arg]
    """The kernels' scalars: float32 bp, s_d, s_p, s_n, D, P, N and whether there is a negative tail."""
    d, p, n = split
    values = (np.float32(v) for v in (bp, s_d, s_p, s_n, d, p, n))
    return (*values, bool(s_n > 0))


def bbit_forward(
    x: torch.Tensor, bp: float, s_d: float, s_p: float, s_n: float, split: tuple[int, int, int]
) -> torch.Tensor:
    """x_hat of float32 CPU `x` (bit for bit `_BBitFakeQuant`'s torch forward; contiguous result)."""
    from calib.kernels import bbit_numba

    match_threads()
    out = torch.empty(x.shape, dtype=torch.float32)
    if x.numel():
        buf, _, stride, m = rows_or_copy(x)
        bbit_numba.bbit_forward(buf, stride, flat(out), m, *_grid(bp, s_d, s_p, s_n, split))
    return out


def bbit_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    bp: float,
    s_d: float,
    s_p: float,
    s_n: float,
    split: tuple[int, int, int],
) -> tuple[torch.Tensor, tuple[float, ...]]:
    """(grad_x, (d/dbp, d/ds_d, d/ds_p, d/ds_n)) of float32 CPU `x` and `grad`."""
    from calib.kernels import bbit_numba

    match_threads()
    grad_x = torch.empty(x.shape, dtype=torch.float32)
    if not x.numel():
        return grad_x, (0.0, 0.0, 0.0, 0.0)
    buf, n, stride, m = rows_or_copy(x)
    partial = np.empty((n * ((m + CHUNK - 1) // CHUNK), 4), dtype=np.float64)
    grid = _grid(bp, s_d, s_p, s_n, split)
    bbit_numba.bbit_backward(buf, stride, flat(grad.contiguous()), flat(grad_x), m, partial, *grid)
    return grad_x, reduce_chunks(partial)


def autograd_backward(
    x: torch.Tensor,
    grad: torch.Tensor,
    bp: torch.Tensor,
    s_d: torch.Tensor,
    s_p: torch.Tensor,
    s_n: torch.Tensor,
    split: tuple[int, int, int],
) -> tuple[torch.Tensor | None, ...]:
    """`_BBitFakeQuant.backward`'s return value (grad_x, d/dbp, d/ds_d, d/ds_p, d/ds_n, None)."""
    grad_x, sums = bbit_backward(x, grad, float(bp), float(s_d), float(s_p), float(s_n), split)
    g_bp, g_sd, g_sp, g_sn = (
        torch.tensor(v, dtype=torch.float32).reshape(t.shape)
        for v, t in zip(sums, (bp, s_d, s_p, s_n), strict=True)
    )
    return grad_x, g_bp, g_sd, g_sp, g_sn, None
