"""NumPy reference of DualRegionQuantize / DualRegionDequant (docs/dual_region_codes.md).

The ONNX local functions, the Triton kernels and the torch fake quantizer are tested bit for bit
against these two functions. Every operation is a separate float32 NumPy ufunc, so each result is
rounded once (IEEE division, no fused multiply-add); `np.rint` rounds half to even.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from plugins.errors import PluginError
from plugins.spec import BP, S_D, S_N, S_P, D, N, P, validate_params

_F32 = np.float32
_OUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16))


def _unpack(params: npt.ArrayLike) -> tuple[np.float32, ...]:
    p = validate_params(params)
    return p[BP], p[S_D], p[S_P], p[S_N], p[D], p[P], p[N]


def quantize(x: npt.NDArray[np.floating], params: npt.ArrayLike) -> npt.NDArray[np.int8]:
    """Encode float16/float32 values as signed b-bit dual-region codes (int8, same shape).

    Raises:
        PluginError: `x` is not float16/float32, or `params` is invalid.
    """
    arr = np.asarray(x)
    if arr.dtype not in _OUT_DTYPES:
        raise PluginError(f"quantize: input must be float16 or float32, got {arr.dtype}")
    bp, s_d, s_p, s_n, d, p, n = _unpack(params)
    xf = arr.astype(_F32)  # float16 -> float32 is exact
    zero = _F32(0.0)
    # A tail-less quantizer (s_n == 0) never reads the negative branch; divide by 1 there instead of 0.
    s_n_safe = s_n if s_n > 0 else _F32(1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        dense = np.clip(np.rint(xf / s_d), -d, d)
        pos = d + np.clip(np.rint((xf - bp) / s_p), zero, p)
        neg = -(d + np.clip(np.rint((-xf - bp) / s_n_safe), zero, n)) if s_n > 0 else np.full_like(xf, -d)
        q = np.where(np.abs(xf) <= bp, dense, np.where(xf > bp, pos, neg))
    q = np.where(np.isnan(xf), zero, q)
    return q.astype(np.int8)


def dequantize(
    codes: npt.NDArray[np.int8], params: npt.ArrayLike, out_dtype: npt.DTypeLike = np.float32
) -> npt.NDArray[np.floating]:
    """Decode int8 dual-region codes to float32 (or float16: one round-to-nearest-even at the end).

    Raises:
        PluginError: `codes` is not int8, `out_dtype` is not float32/float16, or `params` is invalid.
    """
    arr = np.asarray(codes)
    if arr.dtype != np.int8:
        raise PluginError(f"dequantize: codes must be int8, got {arr.dtype}")
    out = np.dtype(out_dtype)
    if out not in _OUT_DTYPES:
        raise PluginError(f"dequantize: out_dtype must be float32 or float16, got {out}")
    bp, s_d, s_p, s_n, d, p, n = _unpack(params)
    q = np.clip(arr.astype(_F32), -(d + n), d + p)
    dense = q * s_d
    pos = bp + ((q - d) * s_p)
    neg = -(bp + ((-q - d) * s_n))
    v = np.where(q > d, pos, np.where(q < -d, neg, dense))
    return v.astype(out)
