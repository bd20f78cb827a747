"""SAFT's sensitivity loss L_sen (Wang et al., ICCV 2025) with a fused per-layer distance.

d_k = mean over samples of || F_fp / ||F_fp||_2 - F_q / ||F_q||_2 ||_2 (norms over each sample's C, H, W,
each as sqrt(sum v^2 + eps) so that its gradient stays finite at zero), and
L_sen = sum_k s_k d_k / sum_k s_k.

The FP side has no gradient, so it is normalised once when captured (`normalise_rows`). The quantized
side runs through `NormalisedDistance`, one autograd node that saves only its inputs: written with
autograd ops the same distance kept three more full-size tensors per layer for backward (the normalised
features and their difference) and took about twice the passes over memory.
"""

from __future__ import annotations

from typing import Any

import torch

from calib.errors import CalibError

EPS = 1e-12


def _row_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum(a * b) of each row (N,), with torch's cascade summation: a BLAS dot (einsum) over 4e5 values
    is ~100x less accurate in float32 and moved L_sen by 1e-5."""
    return (a * b).sum(dim=1)


def _row_norm(flat: torch.Tensor) -> torch.Tensor:
    """sqrt(sum v^2 + eps) of each row (N,)."""
    return torch.sqrt(_row_dot(flat, flat) + EPS)


def normalise_rows(feature: torch.Tensor) -> torch.Tensor:
    """(N, C*H*W) float32: each sample's feature divided by its norm (no gradient needed)."""
    flat = feature.reshape(feature.shape[0], -1).float()
    return flat / _row_norm(flat).unsqueeze(1)


class NormalisedDistance(torch.autograd.Function):
    """dist_i = sqrt(|b_i / |b_i| - a_i|^2 + eps) for normalised FP rows a and quantized rows b.

    Backward: with u = b / |b| - a, d dist / d b = (u - b^ (b^ . u)) / (dist |b|) (the normalisation's
    Jacobian (I - b^ b^T) / |b| applied to u / dist).
    """

    @staticmethod
    def forward(ctx: Any, a_hat: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        nb = _row_norm(b)
        u = (b / nb.unsqueeze(1)).sub_(a_hat)
        dist = torch.sqrt(_row_dot(u, u) + EPS)
        ctx.save_for_backward(a_hat, b, nb, dist)
        return dist

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        a_hat, b, nb, dist = ctx.saved_tensors
        b_hat = b / nb.unsqueeze(1)
        u = b_hat - a_hat
        along = _row_dot(b_hat, u)
        grad_b = torch.addcmul(u, b_hat, along.unsqueeze(1), value=-1.0)
        return None, grad_b.mul_((grad / (dist * nb)).unsqueeze(1))


def layer_distance(fp_normalised: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """d_k: the mean over samples of the normalised-feature distance (0-dim, differentiable in q)."""
    flat = quantized.reshape(quantized.shape[0], -1).float()
    return NormalisedDistance.apply(fp_normalised, flat).mean()


def sensitivity_loss(
    fp: dict[str, torch.Tensor],
    q: dict[str, torch.Tensor],
    weights: dict[str, float],
    fp_normalised: bool = False,
) -> torch.Tensor:
    """L_sen: weighted mean over layers of the per-sample L2 distance of L2-normalised features.

    Args:
        fp: FP input features per layer (already `normalise_rows`-ed when `fp_normalised`).
        q: quantized input features per layer.
        weights: s_k per layer; layers missing from `fp` or `q` are left out.

    Raises:
        CalibError: no layer in common.
    """
    total = None
    norm = 0.0
    for name, s in weights.items():
        if name not in fp or name not in q:
            continue
        a_hat = fp[name] if fp_normalised else normalise_rows(fp[name])
        d = layer_distance(a_hat.detach(), q[name])
        total = s * d if total is None else total + s * d
        norm += s
    if total is None:
        raise CalibError("finetune: no quantized layer ran during the forward pass")
    return total / norm
