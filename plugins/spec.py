"""Names and the params layout of the dual-region ops (normative spec: docs/dual_region_codes.md).

Every implementation (NumPy reference, ONNX local functions, Triton kernels, TensorRT plugins) reads
the same float32[5] params vector laid out as below, so this module is the one place that knows it.
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
"""Index of the positive-tail step s_p = (u - bp) / D."""
S_N: Final = 3
"""Index of the negative-tail step s_n = (-l - bp) / D, 0 without a negative tail."""
D: Final = 4
"""Index of the dense code limit D = 2^(b-2) - 1, stored as a float32 integer."""
NUM_PARAMS: Final = 5
MAX_DENSE_LIMIT: Final = 63
"""The largest D whose codes (|q| <= 2D = 126) fit in int8 (b = 8)."""


def pack_params(bp: float, s_d: float, s_p: float, s_n: float, dense_limit: int) -> npt.NDArray[np.float32]:
    """Lay out one tensor's params as the float32[5] input of DualRegion(De)Quantize.

    The values are rounded to float32 once here; callers pass the float32 steps of
    `drq.grids.bbit_grid` so nothing changes.

    Raises:
        PluginError: the packed vector fails `validate_params`.
    """
    params = np.array([bp, s_d, s_p, s_n, dense_limit], dtype=np.float32)
    validate_params(params)
    return params


def validate_params(params: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Check a params vector and return it as float32[5].

    Raises:
        PluginError: wrong shape or dtype, a non-finite entry, bp <= 0, s_d <= 0, s_p <= 0, s_n < 0,
            or D not an integer in 1..63.
    """
    arr = np.asarray(params)
    if arr.dtype != np.float32:
        raise PluginError(f"params: need float32, got {arr.dtype}")
    if arr.shape != (NUM_PARAMS,):
        raise PluginError(f"params: need shape ({NUM_PARAMS},) [bp, s_d, s_p, s_n, D], got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise PluginError(f"params: every entry must be finite, got {arr.tolist()}")
    bp, s_d, s_p, s_n, d = (float(v) for v in arr)
    if bp <= 0:
        raise PluginError(f"params: breakpoint bp must be > 0, got {bp}")
    if s_d <= 0:
        raise PluginError(f"params: dense step s_d must be > 0, got {s_d}")
    if s_p <= 0:
        raise PluginError(f"params: positive-tail step s_p must be > 0, got {s_p}")
    if s_n < 0:
        raise PluginError(f"params: negative-tail step s_n must be >= 0, got {s_n}")
    if not (math.floor(d) == d and 1 <= d <= MAX_DENSE_LIMIT):
        raise PluginError(f"params: dense limit D must be an integer in 1..{MAX_DENSE_LIMIT}, got {d}")
    return arr
