"""The fused L_sen distance against the same distance written with autograd ops (float64 reference)."""

from __future__ import annotations

import pytest
import torch

from calib.saft_loss import normalise_rows, sensitivity_loss


def _autograd_distance(fp: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    def unit(f: torch.Tensor) -> torch.Tensor:
        flat = f.reshape(f.shape[0], -1)
        return flat / torch.sqrt((flat * flat).sum(dim=1) + 1e-12).unsqueeze(1)

    diff = unit(fp) - unit(q)
    return torch.sqrt((diff * diff).sum(dim=1) + 1e-12).mean()


@pytest.mark.parametrize("noise", [0.3, 0.01])
def test_fused_distance_matches_autograd_in_float64(noise: float) -> None:
    torch.manual_seed(0)
    fp = torch.rand(2, 16, 40, 40) - 0.3
    q = fp * 1.7 + noise * torch.randn_like(fp)
    fused_q = q.clone().requires_grad_(True)
    fused = sensitivity_loss({"a": fp}, {"a": fused_q}, {"a": 1.0})
    fused.backward()
    ref_q = q.double().requires_grad_(True)
    ref = _autograd_distance(fp.double(), ref_q)
    ref.backward()
    assert float(fused) == pytest.approx(float(ref), rel=1e-6, abs=1e-7)
    scale = float(ref_q.grad.abs().max())
    assert float((fused_q.grad.double() - ref_q.grad).abs().max()) <= 1e-5 * scale + 1e-9


def test_equal_directions_give_zero_and_finite_gradients() -> None:
    fp = torch.rand(2, 4, 8, 8)
    q = (2.0 * fp).requires_grad_(True)
    loss = sensitivity_loss({"a": fp}, {"a": q}, {"a": 1.0})
    loss.backward()
    assert float(loss) < 1e-3 and bool(torch.isfinite(q.grad).all())


def test_normalised_fp_side_gives_the_same_loss() -> None:
    torch.manual_seed(1)
    fp, q = torch.rand(3, 4, 8, 8), torch.rand(3, 4, 8, 8)
    raw = sensitivity_loss({"a": fp}, {"a": q}, {"a": 1.0})
    pre = sensitivity_loss({"a": normalise_rows(fp)}, {"a": q}, {"a": 1.0}, fp_normalised=True)
    assert float(raw) == float(pre)
