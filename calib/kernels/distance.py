"""Torch-facing wrappers of L_sen's numba kernels (`calib.kernels.distance_numba`)."""

from __future__ import annotations

import numpy as np
import torch

from calib.kernels import match_threads
from calib.kernels.chunks import CHUNK


def row_sums(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(N, 3) float64: each row's sum a^2, sum a b, sum b^2 of contiguous float32 (N, M) `a`, `b`."""
    from calib.kernels import distance_numba

    match_threads()
    rows, m = a.shape
    partial = np.empty((rows, (m + CHUNK - 1) // CHUNK, 3), dtype=np.float64)
    distance_numba.pair_sums(a.detach().numpy(), b.detach().numpy(), partial)
    totals = np.zeros((rows, 3), dtype=np.float64)
    for chunk in range(partial.shape[1]):  # chunk order: the same sums for any thread count
        totals += partial[:, chunk]
    return totals


def combine_rows(a: torch.Tensor, b: torch.Tensor, c_a: np.ndarray, c_b: np.ndarray) -> torch.Tensor:
    """b c_b - a c_a per row (float32 (N,) coefficients) of contiguous float32 (N, M) `a`, `b`."""
    from calib.kernels import distance_numba

    match_threads()
    out = torch.empty_like(b)
    distance_numba.distance_grad(
        a.detach().numpy(), b.detach().numpy(), out.numpy(), c_a.astype(np.float32), c_b.astype(np.float32)
    )
    return out
