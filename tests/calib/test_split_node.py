"""The fused split node against the composed torch ops it replaced (the gradient spec)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.quantizers import DualRegionActQuantizer, round_ste

F32 = np.float32


def _split_composite(x: torch.Tensor, quant: DualRegionActQuantizer) -> torch.Tensor:
    """The `split` fake quantizer as composed torch ops with `round_ste` (what the node must equal)."""
    lower, bp, upper = quant.bounds()
    q = 2 ** (quant.bits - 1) - 1
    s_d = bp / torch.full_like(bp, float(q))
    s_o = quant.split_outlier_step(lower, bp, upper)
    clipped = torch.minimum(torch.maximum(x, -bp), bp)
    q_d = round_ste(torch.clamp(clipped / s_d, -float(q), float(q))) + 0.0
    q_o = round_ste(torch.clamp((x - clipped) / s_o, -float(q + 1), float(q))) + 0.0
    return q_d * s_d + q_o * s_o


def _run(fn, x_np: np.ndarray, weight: torch.Tensor, bits: int, lower: float, fixed: float | None):  # type: ignore[no-untyped-def]
    quant = DualRegionActQuantizer("split", bits, lower, 0.5, 4.0, outlier_scale=fixed)
    x = torch.tensor(x_np, requires_grad=True)
    out = fn(x, quant)
    (out * weight).sum().backward()
    grads = [
        p.grad.item() if p.grad is not None else 0.0 for p in (quant.lower, quant.breakpoint, quant.upper)
    ]
    return out.detach().numpy(), x.grad.numpy(), grads


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("lower", [-6.0, -0.6, 0.0])
@pytest.mark.parametrize("fixed", [None, 0.37])
def test_split_node_matches_composite(bits: int, lower: float, fixed: float | None) -> None:
    rng = np.random.default_rng(bits)
    # off the clip points +-bp, where the composite's max / min split a tie's gradient in halves
    x_np = np.concatenate([rng.normal(0, 0.5, 3000), rng.uniform(-9, 9, 1000), [0.0, -0.0, 4.0]]).astype(F32)
    x_np = x_np[np.abs(np.abs(x_np) - 0.5) > 1e-4]
    weight = torch.from_numpy(rng.standard_normal(x_np.size).astype(F32))
    fused = _run(lambda t, q: q(t), x_np, weight, bits, lower, fixed)
    composite = _run(_split_composite, x_np, weight, bits, lower, fixed)
    assert fused[0].tobytes() == composite[0].tobytes()  # bit for bit, signed zeros included
    np.testing.assert_allclose(fused[1], composite[1], rtol=1e-6, atol=0)
    assert np.all((fused[1] == weight.numpy()) | (fused[1] == 0))
    for got, want in zip(fused[2], composite[2], strict=True):
        assert np.isfinite(got) and got == pytest.approx(want, rel=1e-4, abs=1e-4)
    assert any(g != 0.0 for g in fused[2])


def test_split_node_gives_nan_no_gradient() -> None:
    quant = DualRegionActQuantizer("split", 4, -3.0, 0.5, 4.0)
    x = torch.tensor([np.nan, 0.3, 7.0, -2.0], requires_grad=True)
    out = quant(x)
    assert np.isnan(out[0].item())
    torch.nan_to_num(out).sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 0.0, 1.0]
    assert all(np.isfinite(p.grad.item()) for p in quant.parameters())


def test_split_node_saves_only_its_input() -> None:
    quant = DualRegionActQuantizer("split", 4, -3.0, 0.5, 4.0)
    x = torch.randn(1, 8, 16, 16, requires_grad=True)
    out = quant(x * 1.0)
    big = [t for t in out.grad_fn.saved_tensors if t.numel() > 1]
    assert len(big) == 1 and big[0].shape == x.shape
