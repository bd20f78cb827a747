"""The `split` dual-region fake quantizer as one autograd node (finetuning speed and memory).

Forward, exactly as `drq.grids.split_grid` computes it in float32 (and as the composed torch ops did):
c = clamp(x, -bp, bp), q_d = round(clamp(c / s_d, -Q, Q)), q_o = round(clamp((x - c) / s_o, -Q-1, Q)),
x_hat = q_d s_d + q_o s_o (Q = 2^(b-1) - 1; + 0.0 turns a -0.0 code into +0.0 as an integer code would).

Backward: the LSQ straight-through rules the composed ops gave (`calib.quantizers.ste`), written out, with
r_d, r_o = 1 where c / s_d, (x - c) / s_o lie inside their code ranges:

* d/dx = r_d where |x| <= bp, r_o outside;
* d/ds_d = sum g (q_d - r_d v_d), d/ds_o = sum g (q_o - r_o v_o) (rounding errors, clamp bounds outside);
* d/dbp (as the clip bound) = sum g (r_d - r_o) sign(x) over |x| > bp; the steps s_d, s_o reach bp, l_a,
  u_a through the small autograd graph that computes them.

The composed ops saved about eight full-size tensors per layer for backward; this node saves only `x`
and recomputes the codes, which is what makes SAFT on IMDN fit in 2 GB (results/ptq_speed). Forward and
backward each run as one fused pass (`calib.kernels.split`, numba) where the kernels are available; the
torch ops here are the reference they are tested against (`tests/calib/test_fused_kernels.py`).
"""

from __future__ import annotations

from typing import Any

import torch

from calib import kernels
from calib.kernels import split as fused


def _codes(
    x: torch.Tensor, bp: float, s_d: torch.Tensor, s_o: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x - clipped x, dense offset v_d, outlier offset v_o), v_* before clamping to the code ranges.

    The clip bounds are Python floats (exact: bp is a float32) because torch's clamp with tensor bounds
    is ~6x slower on the CPU; the divisions keep the 0-dim float32 steps, as `drq.grids` divides.
    """
    clipped = torch.clamp(x, -bp, bp)
    residual = x - clipped
    return residual, clipped.div_(s_d), residual / s_o


def _outside(v: torch.Tensor, vc: torch.Tensor) -> torch.Tensor:
    """1.0 where v was clamped (v != vc), else 0.0; sign() of arithmetic, because comparisons that
    produce bool tensors and their float conversion cost ~6x an arithmetic op on the CPU."""
    return torch.sub(v, vc).abs_().sign_()


def _grid_terms(v: torch.Tensor, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, k - r v): r = 1 inside [lo, hi]; k - r v is d(k s)/ds under the STE (the bound k outside)."""
    vc = torch.clamp(v, lo, hi)
    inside = _outside(v, vc).neg_().add_(1.0)
    err = torch.round(vc).sub_(vc.mul_(inside))
    return inside, err


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b) with torch's cascade summation (a BLAS dot is far less accurate over 1e6 float32s,
    and these sums cancel: it moved the breakpoint gradients by 0.2% on IMDN)."""
    return (a * b).sum()


class SplitFakeQuant(torch.autograd.Function):
    """x_hat = s_d q_d + s_o q_o with the straight-through gradients of the module docstring."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bp: torch.Tensor, s_d: torch.Tensor, s_o: torch.Tensor, q: int):  # type: ignore[override]
        ctx.fused = kernels.enabled() and x.dtype == torch.float32 and x.device.type == "cpu"
        if ctx.fused:
            out = fused.split_forward(x, float(bp), float(s_d), float(s_o), q)
        else:
            out = _reference_forward(x, bp, s_d, s_o, q)
        ctx.save_for_backward(x, bp, s_d, s_o)
        ctx.q = q
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        x, bp, s_d, s_o = ctx.saved_tensors
        want_x = ctx.needs_input_grad[0]
        if ctx.fused:
            scalars = (float(bp), float(s_d), float(s_o), ctx.q)
            grad_x, *sums = fused.split_backward(x, grad.contiguous(), *scalars)
            g_bp, g_sd, g_so = (torch.tensor(v, dtype=torch.float32) for v in sums)
            grad_x = grad_x if want_x else None
        else:
            grad_x, g_bp, g_sd, g_so = _reference_backward(x, grad, bp, s_d, s_o, float(ctx.q), want_x)
        return grad_x, g_bp.reshape(bp.shape), g_sd.reshape(s_d.shape), g_so.reshape(s_o.shape), None


def _reference_forward(x: torch.Tensor, bp: torch.Tensor, s_d: torch.Tensor, s_o: torch.Tensor, q: int):  # type: ignore[no-untyped-def]
    """The forward as torch ops (the fused kernel's reference)."""
    _, v_d, v_o = _codes(x, float(bp), s_d, s_o)
    dense = v_d.clamp_(-float(q), float(q)).round_().add_(0.0).mul_(s_d)
    outlier = v_o.clamp_(-float(q + 1), float(q)).round_().add_(0.0).mul_(s_o)
    return dense.add_(outlier)


def _reference_backward(x, grad, bp, s_d, s_o, q, want_x):  # type: ignore[no-untyped-def]
    """(grad_x, d/dbp, d/ds_d, d/ds_o) as torch ops (the fused kernel's reference)."""
    if bool(torch.isnan(x.sum())):  # NaN gets no gradient and must not poison the parameter sums
        nan = torch.isnan(x)
        x, grad = torch.nan_to_num(x, nan=0.0), grad.masked_fill(nan, 0.0)
    residual, v_d, v_o = _codes(x, float(bp), s_d, s_o)
    r_d, err_d = _grid_terms(v_d, -q, q)
    r_o, err_o = _grid_terms(v_o, -q - 1.0, q)
    outer = residual.sign_()  # +1 above bp, -1 below -bp, 0 in the dense region
    grad_x = None
    if want_x:
        # dense region (r_o = 1 there): r_d = 1 - (1 - r_d); outer region: r_o
        grad_x = grad * r_o.sub(torch.abs(outer).sub_(1.0).mul_(r_d.sub(1.0)))
    g_bp = _dot(grad, r_d.sub_(r_o).mul_(outer))
    return grad_x, g_bp, _dot(grad, err_d), _dot(grad, err_o)


def split_fake_quant(
    x: torch.Tensor, bp: torch.Tensor, s_d: torch.Tensor, s_o: torch.Tensor, bits: int
) -> torch.Tensor:
    """The split budget's x_hat of float32 `x` (0-dim float32 bp, s_d, s_o; see the module docstring)."""
    return SplitFakeQuant.apply(x, bp, s_d, s_o, 2 ** (bits - 1) - 1)
