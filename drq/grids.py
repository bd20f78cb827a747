"""Grid arithmetic of every activation quantizer, derived from recipe parameters in float32.

Torch-free: the torch quantizers (`calib.quantizers`), the ONNX lowerings and the plugin params all
call these, so every implementation starts from the same float32 steps.

Code layouts (b = bits):

* uniform signed: q in [-2^(b-1), 2^(b-1)-1], x_hat = s * (q - z).
* dual-region `b-bit`: one signed b-bit code per value, split per layer into D dense codes each side
  and P positive / N negative tail codes (D + P <= 2^(b-1) - 1, D + N <= 2^(b-1); the recipe's
  `dense_limit`, `pos_tail_codes`, `neg_tail_codes`, by default D = P = N = 2^(b-2) - 1).
  dense |q| <= D: x_hat = q * s_d, s_d = bp / D;
  positive tail D < q <= D + P: x_hat = bp + (q - D) * s_p, s_p = (u - bp) / P;
  negative tail -(D + N) <= q < -D: x_hat = -bp - (-q - D) * s_n, s_n = (-l - bp) / N
  (s_n = 0 when l >= -bp: no negative tail). Default at b = 8: dense -63..63, tails 64..126 / -126..-64.
  The symmetric uniform grid q * s, q in [-2^(b-1), 2^(b-1) - 1], is the case bp = D s, P = 2^(b-1)-1-D,
  N = 2^(b-1) - D, u = bp + P s, l = -(bp + N s).
* dual-region `split`: x_hat = s_d * q_d + s_o * q_o with Q = 2^(b-1) - 1, s_d = bp / Q,
  q_d = clamp(round(clip(x, -bp, bp) / s_d), -Q, Q), r = x - clip(x, -bp, bp),
  q_o = clamp(round(r / s_o), -2^(b-1), 2^(b-1) - 1). Both zero-point 0: two standard INT8 convs.
* dual-region `paper` (the authors' simulation; more than b bits of code per value):
  signed input: dense grid -bp + k * s_d, k = 0..2^b - 1, s_d = 2 bp / (2^b - 1); tails on
  (b-1)-bit grids anchored at the breakpoint: bp + k s_p, s_p = (u - bp) / (2^(b-1) - 1), and
  -bp - k s_n, s_n = (-bp - l) / (2^(b-1) - 1).
  bounded-below input (l >= -bp): two b-bit affine pieces, l + k s_lo on [l, bp] with
  s_lo = (bp - l) / (2^b - 1), and bp + k s_hi on [bp, u] with s_hi = (u - bp) / (2^b - 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drq.recipe import DualRegionAct, default_dense_limit

_F32 = np.float32


@dataclass(frozen=True)
class BBitGrid:
    """float32 steps of the `b-bit` budget; `params()` is the plugin's params vector."""

    breakpoint: np.float32
    s_d: np.float32
    s_p: np.float32
    s_n: np.float32
    dense_limit: int  # D
    pos_tail_codes: int  # P
    neg_tail_codes: int  # N

    def params(self) -> np.ndarray:
        """[bp, s_d, s_p, s_n, D, P, N] as float32: the constant input of DualRegion(De)Quantize."""
        values = (self.breakpoint, self.s_d, self.s_p, self.s_n)
        codes = (self.dense_limit, self.pos_tail_codes, self.neg_tail_codes)
        return np.array([*values, *codes], dtype=np.float32)


@dataclass(frozen=True)
class SplitGrid:
    """float32 scales of the `split` budget."""

    breakpoint: np.float32
    s_d: np.float32
    s_o: np.float32
    dense_qmax: int  # Q = 2^(b-1) - 1
    outlier_qmin: int
    outlier_qmax: int


@dataclass(frozen=True)
class PaperGrid:
    """float32 steps of the `paper` budget (see module docstring)."""

    lower: np.float32
    breakpoint: np.float32
    upper: np.float32
    bounded_below: bool
    s_d: np.float32  # dense step (signed) or s_lo (bounded below)
    s_p: np.float32  # positive tail step (signed) or s_hi (bounded below)
    s_n: np.float32  # negative tail step (signed); 0 when bounded below
    dense_levels: int  # 2^b - 1 (steps across the dense / lower piece)
    tail_levels: int  # 2^(b-1) - 1 (signed) or 2^b - 1 (bounded below)


def dense_limit(bits: int) -> int:
    """D = 2^(b-2) - 1: the default largest dense code of the `b-bit` budget (schema-1 recipes)."""
    return default_dense_limit(bits)


def bbit_grid(act: DualRegionAct) -> BBitGrid:
    """float32 steps of a `b-bit` dual-region quantizer."""
    d, p, n = act.dense_limit, act.pos_tail_codes, act.neg_tail_codes
    if d is None or p is None or n is None:
        raise ValueError(f"bbit_grid needs a b-bit quantizer, got budget {act.budget!r}")
    bp = _F32(act.breakpoint)
    s_d = _F32(bp / _F32(d))
    s_p = _F32((_F32(act.upper) - bp) / _F32(p))
    neg_span = _F32(-_F32(act.lower)) - bp
    s_n = _F32(neg_span / _F32(n)) if neg_span > 0 else _F32(0.0)
    return BBitGrid(bp, s_d, s_p, s_n, d, p, n)


def split_grid(act: DualRegionAct) -> SplitGrid:
    """float32 scales of a `split` dual-region quantizer."""
    if act.outlier_scale is None:
        raise ValueError("split grid needs outlier_scale")
    q = 2 ** (act.bits - 1) - 1
    bp = _F32(act.breakpoint)
    return SplitGrid(bp, _F32(bp / _F32(q)), _F32(act.outlier_scale), q, -(2 ** (act.bits - 1)), q)


def split_outlier_scale(lower: float, breakpoint: float, upper: float, bits: int) -> float:
    """s_o of the split budget from bounds: the larger tail span over Q (float32)."""
    span = max(_F32(upper) - _F32(breakpoint), _F32(-_F32(lower)) - _F32(breakpoint), _F32(0.0))
    q = 2 ** (bits - 1) - 1
    return float(max(_F32(span / _F32(q)), _F32(np.finfo(np.float32).tiny)))


def paper_grid(act: DualRegionAct) -> PaperGrid:
    """float32 steps of the `paper` dual-region quantizer."""
    lo, bp, up = _F32(act.lower), _F32(act.breakpoint), _F32(act.upper)
    full = 2**act.bits - 1
    if act.bounded_below:
        s_lo = _F32((bp - lo) / _F32(full))
        s_hi = _F32((up - bp) / _F32(full))
        return PaperGrid(lo, bp, up, True, s_lo, s_hi, _F32(0.0), full, full)
    tail = 2 ** (act.bits - 1) - 1
    s_d = _F32((bp + bp) / _F32(full))
    s_p = _F32((up - bp) / _F32(tail))
    s_n = _F32((-lo - bp) / _F32(tail))
    return PaperGrid(lo, bp, up, False, s_d, s_p, s_n, full, tail)
