"""Names and the params layout of the dual-region ops (normative spec: docs/dual_region_codes.md).

Every implementation (NumPy reference, ONNX local functions, Triton kernels, TensorRT plugins) reads
the same float32[7] params vector laid out as below, so this module is the one place that knows it.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np
import numpy.typing as npt

from plugins.errors import PluginError

NAMESPACE: Final = "drq"
"""ONNX function domain and TensorRT plugin namespace."""
VERSION: Final = "1"
"""TensorRT plugin version (the ONNX node attribute `plugin_version`)."""
DEQUANT_OP: Final = "DualRegionDequant"
QUANTIZE_OP: Final = "DualRegionQuantize"

BP: Final = 0
"""Index of the breakpoint bp (dense region [-bp, bp])."""
S_D: Final = 1
"""Index of the dense step s_d = bp / D."""
S_P: Final = 2
"""Index of the positive-tail step s_p = (u - bp) / P."""
S_N: Final = 3
"""Index of the negative-tail step s_n = (-l - bp) / N, 0 without a negative tail."""
D: Final = 4
"""Index of the dense code limit D (dense codes -D..D), stored as a float32 integer."""
P: Final = 5
"""Index of the positive tail code count P (tail codes D+1..D+P), a float32 integer."""
N: Final = 6
"""Index of the negative tail code count N (tail codes -(D+N)..-(D+1)), a float32 integer."""
NUM_PARAMS: Final = 7
MAX_POS_CODE: Final = 127
"""D + P <= 127: the largest positive code fits in int8."""
MAX_NEG_CODE: Final = 128
"""D + N <= 128: the most negative code, -128, fits in int8."""


def pack_params(
    bp: float,
    s_d: float,
    s_p: float,
    s_n: float,
    dense_limit: int,
    pos_tail_codes: int | None = None,
    neg_tail_codes: int | None = None,
) -> npt.NDArray[np.float32]:
    """Lay out one tensor's params as the float32[7] input of DualRegion(De)Quantize.

    The values are rounded to float32 once here; callers pass the float32 steps of
    `drq.grids.bbit_grid` so nothing changes. Tail code counts default to `dense_limit` (the split of
    schema-1 recipes, P = N = D).

    Raises:
        PluginError: the packed vector fails `validate_params`.
    """
    p = dense_limit if pos_tail_codes is None else pos_tail_codes
    n = dense_limit if neg_tail_codes is None else neg_tail_codes
    params = np.array([bp, s_d, s_p, s_n, dense_limit, p, n], dtype=np.float32)
    validate_params(params)
    return params


def _is_int(value: float, low: int, high: int) -> bool:
    return math.floor(value) == value and low <= value <= high


def validate_params(params: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Check a params vector and return it as float32[7].

    Raises:
        PluginError: wrong shape or dtype, a non-finite entry, bp <= 0, s_d <= 0, s_p <= 0, s_n < 0,
            D, P or N not a positive integer, D + P > 127 or D + N > 128.
    """
    arr = np.asarray(params)
    if arr.dtype != np.float32:
        raise PluginError(f"params: need float32, got {arr.dtype}")
    if arr.shape != (NUM_PARAMS,):
        raise PluginError(f"params: need shape ({NUM_PARAMS},) [bp, s_d, s_p, s_n, D, P, N], got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise PluginError(f"params: every entry must be finite, got {arr.tolist()}")
    bp, s_d, s_p, s_n, d, p, n = (float(v) for v in arr)
    if bp <= 0:
        raise PluginError(f"params: breakpoint bp must be > 0, got {bp}")
    if s_d <= 0:
        raise PluginError(f"params: dense step s_d must be > 0, got {s_d}")
    if s_p <= 0:
        raise PluginError(f"params: positive-tail step s_p must be > 0, got {s_p}")
    if s_n < 0:
        raise PluginError(f"params: negative-tail step s_n must be >= 0, got {s_n}")
    if not _is_int(d, 1, MAX_POS_CODE - 1):
        raise PluginError(f"params: dense limit D must be an integer in 1..{MAX_POS_CODE - 1}, got {d}")
    if not _is_int(p, 1, MAX_POS_CODE - int(d)):
        raise PluginError(
            f"params: positive tail codes P must be an integer in 1..{MAX_POS_CODE} - D, got {p} (D = {d:g})"
        )
    if not _is_int(n, 1, MAX_NEG_CODE - int(d)):
        raise PluginError(
            f"params: negative tail codes N must be an integer in 1..{MAX_NEG_CODE} - D, got {n} (D = {d:g})"
        )
    return arr
