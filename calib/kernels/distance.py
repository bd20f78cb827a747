"""Torch-facing wrappers of L_sen's numba kernels (`calib.kernels.distance_numba`)."""

from __future__ import annotations

import numpy as np
import torch

from calib.kernels import flat, match_threads, rows
from calib.kernels.chunks import CHUNK


def _row_layout(t: torch.Tensor):  # type: ignore[no-untyped-def]
    """(buffer, row stride) of (N, M) float32 rows: rows of a channel slice without a copy."""
    if t.is_contiguous():
        return flat(t), t.shape[1]
    layout = rows(t)
    if layout is None or layout[1] != t.shape[0]:
        return flat(t.contiguous()), t.shape[1]
    return layout[0], layout[2]


def row_sums(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """(N, 3) float64: each row's sum a^2, sum a b, sum b^2 of float32 CPU (N, M) `a`, `b`."""
    from calib.kernels import distance_numba

    match_threads()
    n, m = a.shape
    partial = np.zeros((n, max(1, (m + CHUNK - 1) // CHUNK), 3), dtype=np.float64)
    if m:
        distance_numba.pair_sums(*_row_layout(a), *_row_layout(b), m, partial)
    totals = np.zeros((n, 3), dtype=np.float64)
    for chunk in range(partial.shape[1]):  # chunk order: the same sums for any thread count
        totals += partial[:, chunk]
    return totals


def combine_rows(a: torch.Tensor, b: torch.Tensor, c_a: np.ndarray, c_b: np.ndarray) -> torch.Tensor:
    """b c_b - a c_a per row (float32 (N,) coefficients) of float32 CPU (N, M) `a`, `b`; contiguous."""
    from calib.kernels import distance_numba

    match_threads()
    n, m = b.shape
    out = torch.empty((n, m), dtype=torch.float32)
    if m:
        distance_numba.distance_grad(
            *_row_layout(a), *_row_layout(b), flat(out), m, c_a.astype(np.float32), c_b.astype(np.float32)
        )
    return out
