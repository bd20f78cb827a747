"""Dual-region fake quantizer (Wang et al., ICCV 2025) in the three code budgets of `drq.grids`.

Bounds l_a = `lower` <= 0 < bp = `breakpoint` < u_a = `upper`: the dense region [-bp, bp] and the outlier
tails each get their own uniform grid. Every float32 step is computed like `drq.grids` computes it
(true float32 divisions of float32 values, each product and sum rounded separately), so the forward
pass equals the NumPy grids (and, for `b-bit`, `plugins.reference` quantize + dequantize) bit for bit.

Gradient rules (all LSQ-style, see `calib.quantizers.ste`): every code behaves as
`round_ste(clamp(v, lo, hi))` of a scaled offset v (`paper` and `b-bit` run as fused autograd nodes
whose backward writes these rules out, see their docstrings and `calib.quantizers.split_node`), so

* input: d x_hat / d x = 1 where the value lies inside its region's code range, 0 where a clamp
  saturates (beyond `upper`, below `lower`, below -bp without a negative tail);
* steps: d x_hat / d s = k - v inside a grid (rounding error), the clamp bound outside it;
* bounds: the steps depend on them (b-bit: s_d = bp / D, s_p = (u - bp) / P, s_n = (-l - bp) / N), so
  `upper` / `lower` get gradient from tail rounding errors and from saturated outliers
  (x > u gives x_hat = bp + P s_p = u: d x_hat / d u = 1), and `breakpoint` gets gradient through the
  dense step s_d and as the tails' anchor (bp + k s_p).
Invalid parameters (lower > 0, bp <= 0, upper <= bp) are clamped to valid values in the forward pass,
with the gradient still reaching the raw parameter (`ste.valid_or`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from calib import kernels
from calib.errors import CalibError
from calib.kernels import bbit as fused_bbit
from calib.quantizers.split_node import split_fake_quant
from calib.quantizers.ste import valid_or
from calib.quantizers.uniform import as_float32
from drq.errors import RecipeError
from drq.grids import split_outlier_scale
from drq.recipe import CODE_SPLIT_FIELDS, DUAL_BUDGETS, DualRegionAct, f32

_TINY = float(np.finfo(np.float32).tiny)
# An upper bound at or below bp is moved just above it (2^-10 relative) in the forward pass.
_UPPER_MARGIN = 1.0 + 2.0**-10


class DualRegionActQuantizer(nn.Module):
    """Per-tensor dual-region fake quantizer of an activation.

    Learnable 0-dim parameters `lower`, `breakpoint`, `upper`. The `split` budget's outlier step s_o
    is derived from the bounds (`drq.grids.split_outlier_scale`) unless a fixed one was given (as
    `from_recipe` does): the buffer `outlier_scale` holds it, NaN meaning "derived".

    Args:
        budget: "paper", "b-bit" or "split" (see `drq.grids`).
        bits: activation bits b.
        lower: l_a <= 0.
        breakpoint: bp > 0.
        upper: u_a > bp.
        outlier_scale: a fixed s_o for the split budget; None derives it from the bounds.
        code_split: b-bit budget only: (D, P, N), the dense limit and the positive / negative tail code
            counts (fixed integers, see `drq.grids`); None takes the default 2^(b-2)-1 for all three.

    Raises:
        CalibError: invalid budget, bits or bounds.
    """

    def __init__(
        self,
        budget: str,
        bits: int,
        lower: float,
        breakpoint: float,
        upper: float,
        outlier_scale: float | None = None,
        code_split: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        if budget not in DUAL_BUDGETS:
            raise CalibError(
                f"DualRegionActQuantizer: budget must be one of {', '.join(DUAL_BUDGETS)}, got {budget!r}"
            )
        if outlier_scale is not None and budget != "split":
            raise CalibError(
                f"DualRegionActQuantizer: only the split budget has an outlier_scale, not {budget!r}"
            )
        lo, bp, up = f32(lower), f32(breakpoint), f32(upper)
        try:
            s_o = None
            if budget == "split":
                s_o = (
                    f32(outlier_scale) if outlier_scale is not None else split_outlier_scale(lo, bp, up, bits)
                )
            split = {}
            if code_split is not None:
                split = dict(zip(CODE_SPLIT_FIELDS, code_split, strict=True))
            spec = DualRegionAct(
                budget=budget, bits=bits, lower=lo, breakpoint=bp, upper=up, outlier_scale=s_o, **split
            )  # validates and fills the b-bit defaults
        except (RecipeError, TypeError, ValueError) as err:
            raise CalibError(f"DualRegionActQuantizer: {err}") from err
        self.code_split = (
            (spec.dense_limit, spec.pos_tail_codes, spec.neg_tail_codes) if budget == "b-bit" else None
        )
        self.budget = budget
        self.bits = bits
        self.lower = nn.Parameter(torch.tensor(lo, dtype=torch.float32))
        self.breakpoint = nn.Parameter(torch.tensor(bp, dtype=torch.float32))
        self.upper = nn.Parameter(torch.tensor(up, dtype=torch.float32))
        fixed = math.nan if outlier_scale is None else f32(outlier_scale)
        self.register_buffer("outlier_scale", torch.tensor(fixed, dtype=torch.float32))

    # -- parameters as used in the forward pass ---------------------------------------------------------

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(lower, bp, upper) as used in the forward pass: the parameters, clamped only when invalid."""
        zero = torch.zeros_like(self.lower)
        lower = valid_or(self.lower <= zero, self.lower, zero)
        tiny = torch.full_like(self.breakpoint, _TINY)
        bp = valid_or(self.breakpoint >= tiny, self.breakpoint, tiny)
        upper = valid_or(self.upper > bp, self.upper, bp * _UPPER_MARGIN)
        return lower, bp, upper

    def use_derived_outlier_scale(self) -> None:
        """Derive the split budget's s_o from the bounds from now on (e.g. before finetuning them)."""
        self.outlier_scale.fill_(math.nan)

    def split_outlier_step(self, lower: torch.Tensor, bp: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        """s_o of the split budget: the fixed buffer, or the larger tail span over Q (float32, >= tiny)."""
        if not bool(torch.isnan(self.outlier_scale)):
            return self.outlier_scale
        q = torch.full_like(bp, float(2 ** (self.bits - 1) - 1))
        span = torch.clamp(torch.maximum(upper - bp, (-lower) - bp), min=0.0)
        return torch.clamp(span / q, min=_TINY)

    # -- forward ------------------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize `x` (any shape, per tensor); returns float32 of the same shape."""
        x = as_float32(x)
        lower, bp, upper = self.bounds()
        if self.budget == "b-bit":
            return self._bbit(x, lower, bp, upper)
        if self.budget == "split":
            return self._split(x, lower, bp, upper)
        return self._paper(x, lower, bp, upper)

    def _bbit(
        self, x: torch.Tensor, lower: torch.Tensor, bp: torch.Tensor, upper: torch.Tensor
    ) -> torch.Tensor:
        # docs/dual_region_codes.md: quantize to one signed b-bit code, decode as DualRegionDequant does.
        assert self.code_split is not None  # set for every b-bit quantizer
        d, p, n = self.code_split
        s_d = bp / torch.full_like(bp, float(d))
        s_p = (upper - bp) / torch.full_like(bp, float(p))
        neg_span = (-lower) - bp
        zero = torch.zeros_like(bp)
        s_n = torch.where(neg_span > zero, neg_span / torch.full_like(bp, float(n)), zero)  # 0: no tail
        return _BBitFakeQuant.apply(x, bp, s_d, s_p, s_n, self.code_split)

    def _split(
        self, x: torch.Tensor, lower: torch.Tensor, bp: torch.Tensor, upper: torch.Tensor
    ) -> torch.Tensor:
        # x_hat = s_d * q_d + s_o * q_o: dense Q/DQ of clip(x) plus residual Q/DQ (two INT8 convs).
        # One autograd node saving only x (`calib.quantizers.split_node`, same bits and STE rules).
        q = 2 ** (self.bits - 1) - 1
        s_d = bp / torch.full_like(bp, float(q))
        s_o = self.split_outlier_step(lower, bp, upper)
        return split_fake_quant(x, bp, s_d, s_o, self.bits)

    def _paper(
        self, x: torch.Tensor, lower: torch.Tensor, bp: torch.Tensor, upper: torch.Tensor
    ) -> torch.Tensor:
        full = 2**self.bits - 1
        full_t = torch.full_like(bp, float(full))
        if bool(lower >= -bp):
            # Bounded below: two b-bit affine pieces, l + k s_lo on [l, bp] and bp + k s_hi on [bp, u].
            s_lo = (bp - lower) / full_t
            s_hi = (upper - bp) / full_t
            return _PaperBoundedFakeQuant.apply(x, lower, bp, s_lo, s_hi, full)
        # Signed: dense -bp + k s_d (k = 0..2^b-1) and (b-1)-bit tails anchored at +-bp.
        tail = 2 ** (self.bits - 1) - 1
        tail_t = torch.full_like(bp, float(tail))
        s_d = (bp + bp) / full_t
        s_p = (upper - bp) / tail_t
        s_n = ((-lower) - bp) / tail_t
        return _PaperSignedFakeQuant.apply(x, bp, s_d, s_p, s_n, full, tail)

    # -- recipe -------------------------------------------------------------------------------------------

    def to_recipe(self, outlier_channels: tuple[int, ...] | None = None) -> DualRegionAct:
        """The recipe entry reproducing this quantizer's forward exactly (float32 values)."""
        with torch.no_grad():
            lower, bp, upper = self.bounds()
            s_o = None
            if self.budget == "split":
                s_o = f32(self.split_outlier_step(lower, bp, upper).item())
            split = {}
            if self.code_split is not None:
                split = dict(zip(CODE_SPLIT_FIELDS, self.code_split, strict=True))
            return DualRegionAct(
                budget=self.budget,  # type: ignore[arg-type]
                bits=self.bits,
                lower=f32(lower.item()),
                breakpoint=f32(bp.item()),
                upper=f32(upper.item()),
                outlier_scale=s_o,
                outlier_channels=None
                if outlier_channels is None
                else tuple(int(c) for c in outlier_channels),
                **split,
            )

    @classmethod
    def from_recipe(cls, act: DualRegionAct) -> DualRegionActQuantizer:
        """Build the quantizer a recipe entry describes (split: the recipe's s_o, fixed).

        Raises:
            CalibError: `act` is not a `DualRegionAct`.
        """
        if not isinstance(act, DualRegionAct):
            raise CalibError(
                f"DualRegionActQuantizer.from_recipe: expected a dual_region act, got {type(act).__name__}"
            )
        split = None
        if act.budget == "b-bit":
            split = (act.dense_limit, act.pos_tail_codes, act.neg_tail_codes)
        return cls(
            act.budget,
            act.bits,
            act.lower,
            act.breakpoint,
            act.upper,
            outlier_scale=act.outlier_scale,
            code_split=split,  # type: ignore[arg-type]
        )

    def extra_repr(self) -> str:
        split = "" if self.code_split is None else f", code_split={self.code_split}"
        return (
            f"budget={self.budget!r}, bits={self.bits}, lower={self.lower.item():.6g}, "
            f"breakpoint={self.breakpoint.item():.6g}, upper={self.upper.item():.6g}{split}"
        )


# ---- fused autograd nodes ------------------------------------------------------------------------------
# Region selection is written as arithmetic with exact 0/1 weights (value * 1 + other * 0 is exactly
# value for finite operands) because torch.where is ~10x slower than arithmetic on the CPU; each node
# saves only x and recomputes its codes in backward, which keeps finetuning memory at one tensor per layer.


def _grid(v: torch.Tensor, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k, v clamped, r): the code round(clamp(v)), the clamped v, and r = 1 where v is inside [lo, hi]."""
    vc = torch.clamp(v, lo, hi)
    return torch.round(vc), vc, (vc == v).to(v.dtype)


def _code(v: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """round(clamp(v, lo, hi)) in place on the temporary `v` (forward passes need no more)."""
    return v.clamp_(lo, hi).round_()


def _rounding_error(k: torch.Tensor, vc: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """k - r v: d(k s)/ds under the STE (v = x'/s inside the range, k outside); finite for any x."""
    return k - vc * r


def _mask(condition: torch.Tensor) -> torch.Tensor:
    return condition.to(torch.float32)


def _finite_grad(x: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x with NaN replaced by 0, and grad zeroed where x is NaN (NaN gets no gradient)."""
    nan = torch.isnan(x)
    if bool(nan.any()):
        return torch.nan_to_num(x, nan=0.0), grad.masked_fill(nan, 0.0)
    return x, grad


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b) as a 0-dim tensor, without the product temporary."""
    return torch.dot(a.reshape(-1), b.reshape(-1))


class _BBitFakeQuant(torch.autograd.Function):
    """The `b-bit` quantize + dequantize (docs/dual_region_codes.md) as one autograd node.

    Forward: kd = clamp(round(x / s_d), -D, D), kp = clamp(round((x - bp) / s_p), 0, P),
    kn = clamp(round((-x - bp) / s_n), 0, N) (0 without a negative tail). The reference's code is
    kd + kp - kn (dense: kp = kn = 0; x > bp: kd = D; x < -bp: kd = -D), decoded as kd s_d when
    kp = kn = 0, bp + kp s_p or -(bp + kn s_n) otherwise. NaN -> 0.

    Backward (LSQ STE; r = 1 inside a grid's code range; m_* the regions |x| <= bp, x > bp, x < -bp;
    t = 1 for a tail code k > 0, 0 for offset 0, which decodes as the dense code +-D):
    d/dx = r in the dense and tail regions, 0 below -bp without a negative tail;
    d/ds_d = k - r v (dense), +-D (offset 0 and below -bp without a tail);
    d/ds_p = k - r v (x > bp); d/ds_n = -(k - r v) (x < -bp);
    d/dbp = +-(1 - r) for tail codes, -+r for offset 0 (v moves with its anchor bp), 0 dense.
    """

    @staticmethod
    def _codes(x, bp, s_d, s_p, s_n, split):  # type: ignore[no-untyped-def]
        d, p, n = split
        has_neg = bool(s_n > 0)
        dense = _grid(x / s_d, -float(d), float(d))
        pos = _grid((x - bp) / s_p, 0.0, float(p))
        # -x - bp == -(x + bp) exactly; dividing by -s_n keeps one rounding.
        neg = _grid((x + bp) / (-s_n), 0.0, float(n)) if has_neg else None
        return has_neg, dense, pos, neg

    @staticmethod
    def forward(ctx, x, bp, s_d, s_p, s_n, split):  # type: ignore[no-untyped-def,override]
        ctx.fused = kernels.enabled() and kernels.takes(x)  # one-pass numba kernels, same bits
        if ctx.fused:
            ctx.save_for_backward(x, bp, s_d, s_p, s_n)
            ctx.split = split
            return fused_bbit.bbit_forward(x, float(bp), float(s_d), float(s_p), float(s_n), split)
        x0 = torch.nan_to_num(x, nan=0.0)  # NaN encodes as code 0
        d, p, n = split
        lim = float(d)
        kd = _code(x0 / s_d, -lim, lim)
        kp = _code((x0 - bp) / s_p, 0.0, float(p))
        t_p = torch.clamp(kp, max=1.0)  # 1 for a positive tail code, 0 for offset 0 (code D)
        out = kp.mul_(s_p).add_(bp).mul_(t_p)
        dense_w = torch.sub(1.0, t_p)
        if bool(s_n > 0):
            # -x - bp == -(x + bp) exactly; dividing by -s_n keeps one rounding.
            kn = _code((x0 + bp) / (-s_n), 0.0, float(n))
            t_n = torch.clamp(kn, max=1.0)
            out.sub_(kn.mul_(s_n).add_(bp).mul_(t_n))
            dense_w.sub_(t_n)
        # kd s_d is also the value of code +-D (tail offset 0, or clamped without a negative tail)
        out = kd.mul_(s_d).mul_(dense_w).add_(out)
        ctx.save_for_backward(x, bp, s_d, s_p, s_n)
        ctx.split = split
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def,override]
        x, bp, s_d, s_p, s_n = ctx.saved_tensors
        if ctx.fused:
            return fused_bbit.autograd_backward(x, grad, bp, s_d, s_p, s_n, ctx.split)
        d = float(ctx.split[0])
        x, grad = _finite_grad(x, grad)
        has_neg, (kd, vd, rd), (kp, vp, rp), neg = _BBitFakeQuant._codes(x, bp, s_d, s_p, s_n, ctx.split)
        g_p = grad * _mask(x > bp)  # the incoming gradient split by region
        g_n = grad * _mask(x < -bp)
        g_d = grad - g_p - g_n
        t_p = torch.clamp(kp, max=1.0)
        grad_x = g_d * rd + g_p * rp
        # offset 0 (t = 0) decodes as +-D s_d; t - r collects +-(1 - r) (codes) and -+r (offset 0)
        g_sd = _dot(g_d, _rounding_error(kd, vd, rd)) + d * (g_p.sum() - _dot(g_p, t_p))
        g_bp = _dot(g_p, t_p - rp)
        g_sn = torch.zeros_like(s_n)
        if has_neg:
            kn, vn, rn = neg
            t_n = torch.clamp(kn, max=1.0)
            grad_x = grad_x + g_n * rn
            g_sd = g_sd - d * (g_n.sum() - _dot(g_n, t_n))
            g_bp = g_bp - _dot(g_n, t_n - rn)
            g_sn = -_dot(g_n, _rounding_error(kn, vn, rn))
        else:
            g_sd = g_sd - d * g_n.sum()  # clamped to code -D
        g_sp = _dot(g_p, _rounding_error(kp, vp, rp))
        return grad_x, g_bp, g_sd, g_sp, g_sn, None


class _PaperSignedFakeQuant(torch.autograd.Function):
    """The `paper` budget, signed input: dense -bp + k s_d (k = 0..2^b-1) and tails +-(bp + k s_tail).

    Backward (LSQ STE, r = 1 inside a grid's range): d/dx = r; d/ds = k - r v on each grid (negated
    for the negative tail); d/dbp = r - 1 (dense, anchored at -bp), 1 - r (positive tail),
    -(1 - r) (negative tail).
    """

    @staticmethod
    def _codes(x, bp, s_d, s_p, s_n, full, tail):  # type: ignore[no-untyped-def]
        dense = _grid((x + bp) / s_d, 0.0, float(full))
        pos = _grid((x - bp) / s_p, 0.0, float(tail))
        neg = _grid((x + bp) / (-s_n), 0.0, float(tail))  # (-x - bp) / s_n
        return dense, pos, neg, _mask(x > bp), _mask(x < -bp)

    @staticmethod
    def forward(ctx, x, bp, s_d, s_p, s_n, full, tail):  # type: ignore[no-untyped-def,override]
        m_p, m_n = _mask(x > bp), _mask(x < -bp)
        dense = _code((x + bp) / s_d, 0.0, float(full)).mul_(s_d).sub_(bp)  # -bp + k s_d
        pos = _code((x - bp) / s_p, 0.0, float(tail)).mul_(s_p).add_(bp)
        neg = _code((x + bp) / (-s_n), 0.0, float(tail)).mul_(s_n).add_(bp)  # (-x - bp) / s_n
        out = dense.mul_(1.0 - m_p - m_n).add_(pos.mul_(m_p)).sub_(neg.mul_(m_n))
        ctx.save_for_backward(x, bp, s_d, s_p, s_n)
        ctx.levels = (full, tail)
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def,override]
        x, bp, s_d, s_p, s_n = ctx.saved_tensors
        x, grad = _finite_grad(x, grad)
        (kd, vd, rd), (kp, vp, rp), (kn, vn, rn), m_p, m_n = _PaperSignedFakeQuant._codes(
            x, bp, s_d, s_p, s_n, *ctx.levels
        )
        g_p, g_n = grad * m_p, grad * m_n
        g_d = grad - g_p - g_n
        grad_x = g_d * rd + g_p * rp + g_n * rn
        g_bp = _dot(g_d, rd) - g_d.sum() + g_p.sum() - _dot(g_p, rp) - g_n.sum() + _dot(g_n, rn)
        g_sd = _dot(g_d, _rounding_error(kd, vd, rd))
        g_sp = _dot(g_p, _rounding_error(kp, vp, rp))
        g_sn = -_dot(g_n, _rounding_error(kn, vn, rn))
        return grad_x, g_bp, g_sd, g_sp, g_sn, None, None


class _PaperBoundedFakeQuant(torch.autograd.Function):
    """The `paper` budget, bounded below: l + k s_lo on [l, bp], bp + k s_hi above (k = 0..2^b-1).

    Backward (LSQ STE): d/dx = r; d/ds_lo, d/ds_hi = k - r v on their piece; d/dl = 1 - r (lower
    piece: values below l saturate at l), d/dbp = 1 - r (upper piece).
    """

    @staticmethod
    def _codes(x, lower, bp, s_lo, s_hi, full):  # type: ignore[no-untyped-def]
        low = _grid((x - lower) / s_lo, 0.0, float(full))
        high = _grid((x - bp) / s_hi, 0.0, float(full))
        return low, high, _mask(x > bp)

    @staticmethod
    def forward(ctx, x, lower, bp, s_lo, s_hi, full):  # type: ignore[no-untyped-def,override]
        m_h = _mask(x > bp)
        low = _code((x - lower) / s_lo, 0.0, float(full)).mul_(s_lo).add_(lower)
        high = _code((x - bp) / s_hi, 0.0, float(full)).mul_(s_hi).add_(bp)
        out = low.mul_(1.0 - m_h).add_(high.mul_(m_h))
        ctx.save_for_backward(x, lower, bp, s_lo, s_hi)
        ctx.full = full
        return out

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def,override]
        x, lower, bp, s_lo, s_hi = ctx.saved_tensors
        x, grad = _finite_grad(x, grad)
        (kl, vl, rl), (kh, vh, rh), m_h = _PaperBoundedFakeQuant._codes(x, lower, bp, s_lo, s_hi, ctx.full)
        g_h = grad * m_h
        g_l = grad - g_h
        grad_x = g_l * rl + g_h * rh
        g_lower = g_l.sum() - _dot(g_l, rl)
        g_bp = g_h.sum() - _dot(g_h, rh)
        g_slo = _dot(g_l, _rounding_error(kl, vl, rl))
        g_shi = _dot(g_h, _rounding_error(kh, vh, rh))
        return grad_x, g_lower, g_bp, g_slo, g_shi, None
