"""SAFT's sensitivity loss L_sen (Wang et al., ICCV 2025) with a fused per-layer distance.

d_k = mean over samples of || F_fp / ||F_fp||_2 - F_q / ||F_q||_2 ||_2 (norms over each sample's C, H, W,
each as sqrt(sum v^2 + eps) so that its gradient stays finite at zero), and
L_sen = sum_k s_k d_k / sum_k s_k.

The FP side has no gradient, so it is normalised once when captured (`normalise_rows`). The quantized
side runs through `NormalisedDistance`, one autograd node that saves only its inputs: written with
autograd ops the same distance kept three more full-size tensors per layer for backward (the normalised
features and their difference) and took about twice the passes over memory.

Where the fused kernels are available (`calib.kernels`), `FusedNormalisedDistance` replaces it: one pass
forward (three float64 row sums, from which both norms, the distance and the projection b^ . u follow),
one pass backward, and the FP side needs no normalising at all (`fp_target`). The torch node stays as its
reference (tests/calib/test_fused_kernels.py).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from calib import kernels
from calib.errors import CalibError
from calib.kernels import distance as fused

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


class FusedNormalisedDistance(torch.autograd.Function):
    """`NormalisedDistance` in two passes of the fused kernels, from the raw or the normalised FP rows.

    With S_aa, S_ab, S_bb the float64 row sums of a.a, a.b, b.b: |a| = sqrt(S_aa + eps) (1 for rows
    given normalised), |b| = sqrt(S_bb + eps), |u|^2 = S_bb / |b|^2 - 2 S_ab / (|a| |b|) + S_aa / |a|^2
    (float64: each term is ~1, the distance^2 at least ~1e-6, so cancellation costs < 1e-8 relative),
    b^ . u = S_bb / |b|^2 - S_ab / (|a| |b|); backward: grad_b = b (1 - b^ . u) c / |b| - a c / |a|
    with c = grad / (dist |b|).
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, a_normalised: bool) -> torch.Tensor:  # type: ignore[override]
        s_aa, s_ab, s_bb = fused.row_sums(a, b).T
        na = np.ones_like(s_aa) if a_normalised else np.sqrt(s_aa + EPS)
        nb = np.sqrt(s_bb + EPS)
        cross = s_ab / (na * nb)
        dist = np.sqrt(np.maximum(s_bb / (nb * nb) - 2.0 * cross + s_aa / (na * na), 0.0) + EPS)
        ctx.save_for_backward(a, b)
        ctx.rows = (na, nb, dist, s_bb / (nb * nb) - cross)
        return torch.from_numpy(dist.astype(np.float32))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor):  # type: ignore[override]
        a, b = ctx.saved_tensors
        na, nb, dist, along = ctx.rows
        c = grad.detach().double().numpy() / (dist * nb)
        return None, fused.combine_rows(a, b, c / na, c * (1.0 - along) / nb), None


def fp_target(feature: torch.Tensor) -> torch.Tensor:
    """What L_sen keeps of an FP feature: its rows as they are for the fused kernels (they normalise on
    the fly; no copy, see `check_fp_targets`), else normalised once (`normalise_rows`).
    `fp_is_normalised()` says which."""
    if fp_is_normalised():
        return normalise_rows(feature)
    rows = feature.detach().reshape(feature.shape[0], -1)  # a view (row-strided for a channel slice)
    rows._drq_captured_version = rows._version  # type: ignore[attr-defined]
    return rows


def check_fp_targets(fp: dict[str, torch.Tensor]) -> None:
    """Raise if a raw `fp_target` was changed in place after its capture (by a later op of the model).

    Raises:
        CalibError: naming the layer.
    """
    for name, rows in fp.items():
        if rows._version != getattr(rows, "_drq_captured_version", rows._version):
            raise CalibError(
                f"finetune: the input of layer {name} was modified in place after the layer read it; "
                f"set {kernels.ENV_SWITCH}=0 (L_sen then normalises a copy of each FP feature when captured)"
            )


def fp_is_normalised() -> bool:
    """True when `fp_target` normalises (the torch reference), False when it keeps raw rows."""
    return not kernels.enabled()


def layer_distance(
    fp_rows: torch.Tensor, quantized: torch.Tensor, fp_normalised: bool = True
) -> torch.Tensor:
    """d_k: the mean over samples of the normalised-feature distance (0-dim, differentiable in q).

    `fp_rows`: the FP feature as (N, C*H*W) rows, already normalised when `fp_normalised`.
    """
    flat = quantized.reshape(quantized.shape[0], -1).float()
    if kernels.enabled() and kernels.takes(fp_rows, flat):
        return FusedNormalisedDistance.apply(fp_rows, flat, fp_normalised).mean()
    a_hat = fp_rows if fp_normalised else normalise_rows(fp_rows)
    return NormalisedDistance.apply(a_hat, flat).mean()


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
        fp_rows = fp[name].detach()
        d = layer_distance(fp_rows.reshape(fp_rows.shape[0], -1), q[name], fp_normalised)
        total = s * d if total is None else total + s * d
        norm += s
    if total is None:
        raise CalibError("finetune: no quantized layer ran during the forward pass")
    return total / norm
