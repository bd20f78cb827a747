"""Straight-through rounding shared by every fake quantizer.

Gradient convention of the whole package (LSQ, Esser et al. 2020): a quantizer computes
`x_hat = s * round_ste(clamp(x / s, q_lo, q_hi))`. `round_ste` rounds half to even in the forward pass
and passes the gradient unchanged backwards; the clamp before the rounding zeroes the input gradient
outside the code range and hands it to the scale instead. Autograd then gives

* d x_hat / d x = 1 where q_lo <= x / s <= q_hi, else 0;
* d x_hat / d s = round(x / s) - x / s inside the range, q_lo or q_hi outside it.

The forward value equals `s * clamp(round(x / s), q_lo, q_hi)` exactly because round is monotonic and
the bounds are integers, so clamping before or after rounding gives the same code.
"""

from __future__ import annotations

from typing import Any

import torch


class _RoundSTE(torch.autograd.Function):
    """torch.round (half to even) forward, identity backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 - autograd signature
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return grad


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even in the forward pass; pass the gradient through unchanged."""
    return _RoundSTE.apply(x)


def valid_or(ok: torch.Tensor, value: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """`value` where `ok`, else `fallback`, with the gradient always reaching `value`.

    Keeps learnable quantizer parameters valid during training: the forward value is exactly `value`
    whenever it is valid (so a recipe's parameters reproduce the forward bit for bit), and a parameter
    an optimiser pushed out of its valid range still receives the gradient that can move it back
    (`value - value.detach()` is exactly 0 in the forward pass and has gradient 1).
    """
    return torch.where(ok, value, fallback.detach() + (value - value.detach()))
