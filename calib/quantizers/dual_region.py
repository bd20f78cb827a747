"""Dual-region fake quantizer (Wang et al., ICCV 2025) in the three code budgets of `calib.grids`.

Bounds l_a = `lower` <= 0 < bp = `breakpoint` < u_a = `upper`: the dense region [-bp, bp] and the outlier
tails each get their own uniform grid. Every float32 step is computed like `calib.grids` computes it
(true float32 divisions of float32 values, each product and sum rounded separately), so the forward
pass equals the NumPy grids (and, for `b-bit`, `plugins.reference` quantize + dequantize) bit for bit.

Gradient rules (all LSQ-style, see `calib.quantizers.ste`): every code is
`round_ste(clamp(v, lo, hi))` of a scaled offset v, so

* input: d x_hat / d x = 1 where the value lies inside its region's code range, 0 where a clamp
  saturates (beyond `upper`, below `lower`, below -bp without a negative tail);
* steps: d x_hat / d s = k - v inside a grid (rounding error), the clamp bound outside it;
* bounds: the steps depend on them (b-bit: s_d = bp / D, s_p = (u - bp) / D, s_n = (-l - bp) / D), so
  `upper` / `lower` get gradient from tail rounding errors and from saturated outliers
  (x > u gives x_hat = bp + D s_p = u: d x_hat / d u = 1), and `breakpoint` gets gradient through the
  dense step s_d and as the tails' anchor (bp + k s_p).
Invalid parameters (lower > 0, bp <= 0, upper <= bp) are clamped to valid values in the forward pass,
with the gradient still reaching the raw parameter (`ste.valid_or`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from calib.errors import CalibError, RecipeError
from calib.grids import dense_limit, split_outlier_scale
from calib.quantizers.ste import round_ste, valid_or
from calib.quantizers.uniform import as_float32
from calib.recipe import DUAL_BUDGETS, DualRegionAct, f32

_TINY = float(np.finfo(np.float32).tiny)
# An upper bound at or below bp is moved just above it (2^-10 relative) in the forward pass.
_UPPER_MARGIN = 1.0 + 2.0**-10


class DualRegionActQuantizer(nn.Module):
    """Per-tensor dual-region fake quantizer of an activation.

    Learnable 0-dim parameters `lower`, `breakpoint`, `upper`. The `split` budget's outlier step s_o
    is derived from the bounds (`calib.grids.split_outlier_scale`) unless a fixed one was given (as
    `from_recipe` does): the buffer `outlier_scale` holds it, NaN meaning "derived".

    Args:
        budget: "paper", "b-bit" or "split" (see `calib.grids`).
        bits: activation bits b.
        lower: l_a <= 0.
        breakpoint: bp > 0.
        upper: u_a > bp.
        outlier_scale: a fixed s_o for the split budget; None derives it from the bounds.

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
    ) -> None:
        super().__init__()
        if budget not in DUAL_BUDGETS:
            raise CalibError(f"DualRegionActQuantizer: budget must be one of {', '.join(DUAL_BUDGETS)}, got {budget!r}")
        if outlier_scale is not None and budget != "split":
            raise CalibError(f"DualRegionActQuantizer: only the split budget has an outlier_scale, not {budget!r}")
        lo, bp, up = f32(lower), f32(breakpoint), f32(upper)
        try:
            s_o = None
            if budget == "split":
                s_o = f32(outlier_scale) if outlier_scale is not None else split_outlier_scale(lo, bp, up, bits)
            DualRegionAct(budget=budget, bits=bits, lower=lo, breakpoint=bp, upper=up, outlier_scale=s_o)  # validates
        except (RecipeError, TypeError) as err:
            raise CalibError(f"DualRegionActQuantizer: {err}") from err
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

    def _bbit(self, x: torch.Tensor, lower: torch.Tensor, bp: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        # docs/dual_region_codes.md: quantize to one signed b-bit code, decode as DualRegionDequant does.
        d = dense_limit(self.bits)
        d_t = torch.full_like(bp, float(d))
        s_d = bp / d_t
        s_p = (upper - bp) / d_t
        neg_span = (-lower) - bp
        zero = torch.zeros_like(bp)
        s_n = torch.where(neg_span > zero, neg_span / d_t, zero)
        has_neg = s_n > zero
        s_n_safe = torch.where(has_neg, s_n, torch.ones_like(s_n))  # no division by 0 on the unused branch
        top = d_t * s_d  # decoded value of code D (dense), also what a tail code with offset 0 decodes to
        dense = (round_ste(torch.clamp(x / s_d, -float(d), float(d))) + 0.0) * s_d
        k_p = round_ste(torch.clamp((x - bp) / s_p, 0.0, float(d)))
        t_p = k_p * s_p
        # Offset 0 is code D, decoded densely (D * s_d); the STE term keeps the tail's gradient.
        pos = torch.where(k_p > 0, bp + t_p, top + (t_p - t_p.detach()))
        k_n = round_ste(torch.clamp(((-x) - bp) / s_n_safe, 0.0, float(d)))
        t_n = k_n * s_n
        neg = torch.where((k_n > 0) & has_neg, -(bp + t_n), -top - (t_n - t_n.detach()))
        out = torch.where(torch.abs(x) <= bp, dense, torch.where(x > bp, pos, neg))
        return torch.where(torch.isnan(x), torch.zeros_like(out), out)  # NaN encodes as code 0

    def _split(self, x: torch.Tensor, lower: torch.Tensor, bp: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        # x_hat = s_d * q_d + s_o * q_o: dense Q/DQ of clip(x) plus residual Q/DQ (two INT8 convs).
        q = 2 ** (self.bits - 1) - 1
        s_d = bp / torch.full_like(bp, float(q))
        s_o = self.split_outlier_step(lower, bp, upper)
        clipped = torch.minimum(torch.maximum(x, -bp), bp)
        q_d = round_ste(torch.clamp(clipped / s_d, -float(q), float(q))) + 0.0
        q_o = round_ste(torch.clamp((x - clipped) / s_o, -float(q + 1), float(q))) + 0.0
        return q_d * s_d + q_o * s_o

    def _paper(self, x: torch.Tensor, lower: torch.Tensor, bp: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
        full = float(2**self.bits - 1)
        full_t = torch.full_like(bp, full)
        if bool(lower >= -bp):
            # Bounded below: two b-bit affine pieces, l + k s_lo on [l, bp] and bp + k s_hi on [bp, u].
            s_lo = (bp - lower) / full_t
            s_hi = (upper - bp) / full_t
            low = lower + round_ste(torch.clamp((x - lower) / s_lo, 0.0, full)) * s_lo
            high = bp + round_ste(torch.clamp((x - bp) / s_hi, 0.0, full)) * s_hi
            return torch.where(x <= bp, low, high)
        # Signed: dense -bp + k s_d (k = 0..2^b-1) and (b-1)-bit tails anchored at +-bp.
        tail = float(2 ** (self.bits - 1) - 1)
        tail_t = torch.full_like(bp, tail)
        s_d = (bp + bp) / full_t
        s_p = (upper - bp) / tail_t
        s_n = ((-lower) - bp) / tail_t
        dense = (-bp) + round_ste(torch.clamp((x + bp) / s_d, 0.0, full)) * s_d
        pos = bp + round_ste(torch.clamp((x - bp) / s_p, 0.0, tail)) * s_p
        neg = -(bp + round_ste(torch.clamp(((-x) - bp) / s_n, 0.0, tail)) * s_n)
        return torch.where(torch.abs(x) <= bp, dense, torch.where(x > bp, pos, neg))

    # -- recipe -------------------------------------------------------------------------------------------

    def to_recipe(self, outlier_channels: tuple[int, ...] | None = None) -> DualRegionAct:
        """The recipe entry reproducing this quantizer's forward exactly (float32 values)."""
        with torch.no_grad():
            lower, bp, upper = self.bounds()
            s_o = None
            if self.budget == "split":
                s_o = f32(self.split_outlier_step(lower, bp, upper).item())
            return DualRegionAct(
                budget=self.budget,  # type: ignore[arg-type]
                bits=self.bits,
                lower=f32(lower.item()),
                breakpoint=f32(bp.item()),
                upper=f32(upper.item()),
                outlier_scale=s_o,
                outlier_channels=None if outlier_channels is None else tuple(int(c) for c in outlier_channels),
            )

    @classmethod
    def from_recipe(cls, act: DualRegionAct) -> DualRegionActQuantizer:
        """Build the quantizer a recipe entry describes (split: the recipe's s_o, fixed).

        Raises:
            CalibError: `act` is not a `DualRegionAct`.
        """
        if not isinstance(act, DualRegionAct):
            raise CalibError(f"DualRegionActQuantizer.from_recipe: expected a dual_region act, got {type(act).__name__}")
        return cls(act.budget, act.bits, act.lower, act.breakpoint, act.upper, outlier_scale=act.outlier_scale)

    def extra_repr(self) -> str:
        return (
            f"budget={self.budget!r}, bits={self.bits}, lower={self.lower.item():.6g}, "
            f"breakpoint={self.breakpoint.item():.6g}, upper={self.upper.item():.6g}"
        )
