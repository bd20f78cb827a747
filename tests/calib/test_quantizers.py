"""Fake quantizers: levels and ranges of every budget, ties, bit-exactness vs NumPy grids, STE gradients.

The NumPy fake quantizers below are written from `drq.grids` (its docstring and its float32 steps),
so agreement bit for bit means the torch forward computes the very steps export will use.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.errors import CalibError
from calib.quantizers import DualRegionActQuantizer, UniformActQuantizer, WeightQuantizer, round_ste
from drq.grids import dense_limit, paper_grid, split_grid, split_outlier_scale
from drq.recipe import DualRegionAct, UniformAct, WeightQuant, f32

F32 = np.float32


# ---- NumPy fake quantizers from drq.grids ---------------------------------------------------------


def np_uniform(x: np.ndarray, act: UniformAct) -> np.ndarray:
    s, z = F32(act.scale), F32(act.zero_point)
    q = np.clip(np.rint(x / s) + z, F32(act.qmin), F32(act.qmax))
    return ((q - z) * s).astype(F32)


def np_weight(w: np.ndarray, wq: WeightQuant) -> np.ndarray:
    s = np.asarray(wq.scale, dtype=F32)
    if wq.axis is not None:
        shape = [1] * w.ndim
        shape[wq.axis] = -1
        s = s.reshape(shape)
    q = np.clip(np.rint(w / s), F32(-wq.qmax), F32(wq.qmax)) + F32(0)  # integer codes: no -0.0
    return (q * s).astype(F32)


def np_paper(x: np.ndarray, act: DualRegionAct) -> np.ndarray:
    g = paper_grid(act)
    full, tail = F32(g.dense_levels), F32(g.tail_levels)
    zero = F32(0)
    if g.bounded_below:
        low = g.lower + np.clip(np.rint((x - g.lower) / g.s_d), zero, full) * g.s_d
        high = g.breakpoint + np.clip(np.rint((x - g.breakpoint) / g.s_p), zero, full) * g.s_p
        return np.where(x <= g.breakpoint, low, high).astype(F32)
    bp = g.breakpoint
    dense = -bp + np.clip(np.rint((x + bp) / g.s_d), zero, full) * g.s_d
    pos = bp + np.clip(np.rint((x - bp) / g.s_p), zero, tail) * g.s_p
    neg = -bp - np.clip(np.rint((-x - bp) / g.s_n), zero, tail) * g.s_n
    return np.where(np.abs(x) <= bp, dense, np.where(x > bp, pos, neg)).astype(F32)


def np_split(x: np.ndarray, act: DualRegionAct) -> np.ndarray:
    g = split_grid(act)
    clipped = np.clip(x, -g.breakpoint, g.breakpoint)
    q_d = np.clip(np.rint(clipped / g.s_d), F32(-g.dense_qmax), F32(g.dense_qmax))
    q_o = np.clip(np.rint((x - clipped) / g.s_o), F32(g.outlier_qmin), F32(g.outlier_qmax))
    return (q_d * g.s_d + q_o * g.s_o).astype(F32)


def run(quantizer: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    return quantizer(torch.from_numpy(np.asarray(x, dtype=F32))).detach().numpy()


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(a.astype(F32).view(np.uint32), b.astype(F32).view(np.uint32))


def levels(quantizer: torch.nn.Module, lo: float, hi: float, n: int = 200_001) -> np.ndarray:
    return np.unique(run(quantizer, np.linspace(lo, hi, n, dtype=F32)))


# Parameters whose float32 steps are exact powers of two, so levels sit exactly on the bounds.
def exact_bbit(bits: int, signed: bool = True) -> tuple[float, float, float]:
    d = dense_limit(bits)
    bp = d / 16  # s_d = 1/16
    return (-(bp + d / 8) if signed else -bp / 2), bp, bp + d / 4  # s_n = 1/8, s_p = 1/4


def exact_paper(bits: int, signed: bool = True) -> tuple[float, float, float]:
    full, tail = 2**bits - 1, 2 ** (bits - 1) - 1
    if signed:
        bp = full / 32  # s_d = 1/16
        return -(bp + tail / 8), bp, bp + tail / 4
    bp = full / 64  # lower = -bp: s_lo = 1/32
    return -bp, bp, bp + full / 8  # s_hi = 1/8


def exact_split(bits: int) -> tuple[float, float, float]:
    q = 2 ** (bits - 1) - 1
    bp = q / 16  # s_d = 1/16
    return -(bp + q / 4), bp, bp + q / 4  # s_o = 1/4


# ---- round_ste -------------------------------------------------------------------------------------


def test_round_ste_rounds_half_to_even_with_identity_gradient() -> None:
    x = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49, 1.51], requires_grad=True)
    y = round_ste(x)
    assert y.tolist() == [-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 0.0, 2.0]
    (y * torch.arange(8.0)).sum().backward()
    assert x.grad.tolist() == list(range(8))


# ---- uniform activations and weights ----------------------------------------------------------------


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_uniform_signed_has_full_range_levels(bits: int) -> None:
    q = UniformActQuantizer(bits, 0.125)
    lv = levels(q, -100, 100)
    assert lv.size == 2**bits
    assert lv[0] == -(2 ** (bits - 1)) * 0.125 and lv[-1] == (2 ** (bits - 1) - 1) * 0.125


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_uniform_unsigned_with_zero_point(bits: int) -> None:
    z = 2 ** (bits - 2)
    q = UniformActQuantizer(bits, 0.25, zero_point=z, signed=False)
    lv = levels(q, -200, 200)
    assert lv.size == 2**bits
    assert lv[0] == -z * 0.25 and lv[-1] == (2**bits - 1 - z) * 0.25
    assert 0.0 in lv  # zero is exactly representable


def test_uniform_ties_go_to_even() -> None:
    q = UniformActQuantizer(8, 0.5)
    out = run(q, np.array([0.25, 0.75, 1.25, -0.25, -0.75, 63.25], dtype=F32))  # x/s = .5, 1.5, 2.5, ...
    assert out.tolist() == [0.0, 1.0, 1.0, 0.0, -1.0, 63.0]


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
@pytest.mark.parametrize("signed", [True, False])
def test_uniform_matches_numpy_bitwise(bits: int, signed: bool) -> None:
    rng = np.random.default_rng(bits)
    x = (rng.standard_normal(5000) * 3).astype(F32)
    for _ in range(5):
        scale = float(rng.uniform(1e-3, 1.0))
        zp = 0 if signed else int(rng.integers(0, 2**bits))
        act = UniformAct(bits, f32(scale), zp, signed)
        q = UniformActQuantizer(bits, scale, zp, signed)
        assert bits_equal(run(q, x), np_uniform(x, act))
        assert q.to_recipe() == act


def test_uniform_rejects_bad_arguments() -> None:
    with pytest.raises(CalibError, match="UniformActQuantizer: zero_point"):
        UniformActQuantizer(4, 0.1, zero_point=16, signed=False)
    with pytest.raises(CalibError, match="UniformActQuantizer: scale"):
        UniformActQuantizer(4, 0.0)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weight_quantizer_is_narrow_range(bits: int) -> None:
    q = WeightQuantizer(bits, torch.tensor([0.5]), None)
    lv = levels(q, -1000, 1000)
    qmax = 2 ** (bits - 1) - 1
    assert lv.size == 2 * qmax + 1
    assert lv[0] == -qmax * 0.5 and lv[-1] == qmax * 0.5


@pytest.mark.parametrize(
    ("shape", "axis"), [((6, 3, 3, 3), 0), ((3, 6, 2, 2), 1), ((6, 5), 0), ((6, 3, 3, 3), None)]
)
def test_weight_quantizer_matches_numpy_per_channel(shape: tuple[int, ...], axis: int | None) -> None:
    rng = np.random.default_rng(len(shape))
    w = rng.standard_normal(shape).astype(F32)
    channels = 1 if axis is None else shape[axis]
    scale = rng.uniform(0.01, 0.3, channels).astype(F32)
    q = WeightQuantizer(4, torch.from_numpy(scale), axis)
    wq = WeightQuant(4, tuple(float(s) for s in scale), axis)
    assert bits_equal(run(q, w), np_weight(w, wq))
    assert q.to_recipe() == wq
    # each channel saturates at its own +-7 * scale
    out = run(q, w * 100)
    moved = np.moveaxis(out, 0 if axis is None else axis, 0).reshape(channels if axis is not None else 1, -1)
    assert np.array_equal(np.abs(moved).max(axis=1), (7 * scale).astype(F32))


def test_weight_quantizer_rejects_mismatched_channels() -> None:
    q = WeightQuantizer(4, torch.ones(4), 0)
    with pytest.raises(CalibError, match="4 scales do not match axis 0"):
        q(torch.ones(3, 2))


# ---- dual-region levels and ranges -------------------------------------------------------------------


@pytest.mark.parametrize("bits", [3, 4, 5, 6, 7, 8])
def test_bbit_levels_signed(bits: int) -> None:
    lower, bp, upper = exact_bbit(bits)
    lv = levels(DualRegionActQuantizer("b-bit", bits, lower, bp, upper), 2 * lower, 2 * upper)
    d = dense_limit(bits)
    assert lv.size == 4 * d + 1 == 2**bits - 3
    assert lv[0] == F32(lower) and lv[-1] == F32(upper)
    dense = lv[np.abs(lv) <= bp]
    assert dense.size == 2 * d + 1 and np.array_equal(dense, np.arange(-d, d + 1, dtype=F32) / 16)


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_bbit_levels_bounded_below(bits: int) -> None:
    lower, bp, upper = exact_bbit(bits, signed=False)
    lv = levels(DualRegionActQuantizer("b-bit", bits, lower, bp, upper), -3 * bp, 2 * upper)
    d = dense_limit(bits)
    assert lv.size == 3 * d + 1  # no negative tail codes
    assert lv[0] == -F32(bp) and lv[-1] == F32(upper)


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_paper_levels_signed(bits: int) -> None:
    lower, bp, upper = exact_paper(bits)
    lv = levels(DualRegionActQuantizer("paper", bits, lower, bp, upper), 2 * lower, 2 * upper)
    assert lv.size == 2**bits + 2 * (2 ** (bits - 1) - 1)
    assert lv[0] == F32(lower) and lv[-1] == F32(upper)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_paper_levels_bounded_below(bits: int) -> None:
    lower, bp, upper = exact_paper(bits, signed=False)
    lv = levels(DualRegionActQuantizer("paper", bits, lower, bp, upper), 2 * lower - 1, 2 * upper)
    assert lv.size == 2 ** (bits + 1) - 1  # two b-bit pieces sharing the breakpoint level
    assert lv[0] == F32(lower) and lv[-1] == F32(upper) and F32(bp) in lv


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_split_levels(bits: int) -> None:
    lower, bp, upper = exact_split(bits)
    quant = DualRegionActQuantizer("split", bits, lower, bp, upper)
    q = 2 ** (bits - 1) - 1
    assert levels(quant, -bp, bp).size == 2 * q + 1  # dense codes
    lv = levels(quant, lower, upper)
    assert lv.size == 4 * q + 1  # plus q positive and q negative residual codes
    assert lv[0] == F32(lower) and lv[-1] == F32(upper)
    # the residual code range is the full signed b-bit one: one more negative code below -u
    assert levels(quant, 2 * lower, 2 * upper)[0] == F32(lower) - F32(0.25)


def test_dual_region_ties_go_to_even() -> None:
    lower, bp, upper = exact_bbit(4)  # bp 0.1875, s_d 1/16, s_p 1/4, s_n 1/8
    bbit = DualRegionActQuantizer("b-bit", 4, lower, bp, upper)
    x = np.array([0.5 / 16, 1.5 / 16, -2.5 / 16, bp + 1.5 / 4, bp + 0.5 / 4, -(bp + 2.5 / 8)], dtype=F32)
    assert run(bbit, x).tolist() == [0.0, 2 / 16, -2 / 16, bp + 2 / 4, 3 / 16, -(bp + 2 / 8)]
    lower, bp, upper = exact_paper(4)  # bp 15/32, s_d 1/16
    paper = DualRegionActQuantizer("paper", 4, lower, bp, upper)
    x = np.array([-bp + 0.5 / 16, -bp + 1.5 / 16], dtype=F32)
    assert run(paper, x).tolist() == [-bp, -bp + 2 / 16]
    lower, bp, upper = exact_split(4)  # bp 7/16, s_d 1/16, s_o 1/4
    split = DualRegionActQuantizer("split", 4, lower, bp, upper)
    x = np.array([2.5 / 16, bp + 0.5 / 4, bp + 1.5 / 4], dtype=F32)
    assert run(split, x).tolist() == [2 / 16, bp, bp + 2 / 4]


def _random_bounds(rng: np.random.Generator) -> tuple[float, float, float]:
    bp = float(rng.uniform(0.01, 2.0))
    upper = bp + float(rng.uniform(1e-3, 20.0))
    lower = -float(rng.uniform(0.0, 10.0)) if rng.random() < 0.6 else -float(rng.uniform(0.0, bp))
    return lower, bp, upper


@pytest.mark.parametrize("bits", [2, 3, 4, 6, 8])
def test_paper_and_split_match_numpy_bitwise(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for _ in range(12):
        lower, bp, upper = _random_bounds(rng)
        x = np.concatenate([rng.normal(0, bp, 3000), rng.uniform(2 * lower - 1, 2 * upper, 3000)]).astype(F32)
        paper = DualRegionActQuantizer("paper", bits, lower, bp, upper)
        assert bits_equal(run(paper, x), np_paper(x, paper.to_recipe()))
        split = DualRegionActQuantizer("split", bits, lower, bp, upper)
        act = split.to_recipe()
        assert act.outlier_scale == split_outlier_scale(f32(lower), f32(bp), f32(upper), bits)
        assert bits_equal(run(split, x), np_split(x, act))
        fixed = DualRegionActQuantizer("split", bits, lower, bp, upper, outlier_scale=0.37)
        assert bits_equal(run(fixed, x), np_split(x, fixed.to_recipe()))


def test_dual_region_rejects_bad_arguments() -> None:
    with pytest.raises(CalibError, match="need lower <= 0 < breakpoint < upper"):
        DualRegionActQuantizer("b-bit", 4, -1.0, 2.0, 1.0)
    with pytest.raises(CalibError, match="at least 3 bits"):
        DualRegionActQuantizer("b-bit", 2, -1.0, 0.5, 1.0)
    with pytest.raises(CalibError, match="budget must be one of"):
        DualRegionActQuantizer("uniform", 4, -1.0, 0.5, 1.0)
    with pytest.raises(CalibError, match="only the split budget"):
        DualRegionActQuantizer("paper", 4, -1.0, 0.5, 1.0, outlier_scale=0.1)


# ---- STE gradients ------------------------------------------------------------------------------------


def _input_grad(quantizer: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    t = torch.tensor(x, dtype=torch.float32, requires_grad=True)
    quantizer(t).sum().backward()
    return t.grad.numpy()


@pytest.mark.parametrize("budget", ["paper", "b-bit", "split"])
def test_input_gradient_is_identity_inside_and_zero_where_clamped(budget: str) -> None:
    lower, bp, upper = -3.0, 0.5, 4.0
    quant = DualRegionActQuantizer(budget, 4, lower, bp, upper)
    inside = np.linspace(lower * 0.98, upper * 0.98, 1001, dtype=F32)
    inside = inside[np.abs(np.abs(inside) - bp) > 1e-3]  # off the region boundaries
    assert np.all(_input_grad(quant, inside) == 1.0)
    outside = np.array([upper * 1.5, upper * 10, lower * 1.5 - 1, lower * 10], dtype=F32)
    assert np.all(_input_grad(quant, outside) == 0.0)


def test_input_gradient_bounded_below_is_zero_under_minus_bp() -> None:
    quant = DualRegionActQuantizer("b-bit", 4, 0.0, 0.5, 4.0)
    assert np.all(_input_grad(quant, np.array([-0.6, -2.0], dtype=F32)) == 0.0)
    assert np.all(_input_grad(quant, np.array([-0.4, 0.0, 0.4, 2.0], dtype=F32)) == 1.0)


def test_uniform_input_gradient_and_scale_gradient() -> None:
    q = UniformActQuantizer(4, 0.25)  # codes -8..7
    x = torch.tensor([0.3, 1.0, 5.0, -5.0], requires_grad=True)
    q(x).sum().backward()
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0]
    v = np.float32(0.3) / np.float32(0.25)
    # LSQ: round(v) - v inside (1 - 1.2, 4 - 4), the clamp bound outside (7, -8)
    assert q.scale.grad.item() == pytest.approx((1 - v) + 0 + 7 - 8, rel=1e-6)


def _param_grads(quant: DualRegionActQuantizer, x: np.ndarray, loss: str = "sum") -> dict[str, float]:
    quant.zero_grad()
    t = torch.from_numpy(x.astype(F32))
    out = quant(t)
    (out.sum() if loss == "sum" else ((out - t) ** 2).sum()).backward()
    return {name: p.grad.item() for name, p in quant.named_parameters()}


@pytest.mark.parametrize("budget", ["paper", "b-bit", "split"])
def test_saturated_outliers_pull_the_bounds(budget: str) -> None:
    quant = DualRegionActQuantizer(budget, 4, -2.0, 0.5, 3.0)
    high = _param_grads(quant, np.array([10.0], dtype=F32))
    assert high["upper"] == pytest.approx(1.0, abs=1e-5) and high["lower"] == 0.0
    low = _param_grads(quant, np.array([-10.0], dtype=F32))
    if budget == "split":
        # one s_o from the larger (upper) span: x_hat = -bp - 8 s_o, s_o = (u - bp) / 7
        assert low["upper"] == pytest.approx(-8 / 7, rel=1e-5) and low["lower"] == 0.0
    else:
        assert low["lower"] == pytest.approx(1.0, abs=1e-5) and low["upper"] == 0.0
    # the MSE loss of clipped outliers falls when the bound grows
    assert _param_grads(quant, np.array([10.0], dtype=F32), "mse")["upper"] < 0


@pytest.mark.parametrize("budget", ["paper", "b-bit", "split"])
def test_rounding_error_gradients_are_finite_and_positive(budget: str) -> None:
    """For unsaturated values the MSE gradient of a step is 2 s/N sum (k - v)^2 > 0: finer is better."""
    rng = np.random.default_rng(0)
    quant = DualRegionActQuantizer(budget, 4, -3.0, 0.5, 3.0)
    dense = rng.uniform(-0.45, 0.45, 500).astype(F32)
    g = _param_grads(quant, dense, "mse")
    assert g["breakpoint"] > 0 and g["upper"] == 0.0 and g["lower"] == 0.0
    tail = rng.uniform(0.6, 2.9, 500).astype(F32)
    g = _param_grads(quant, tail, "mse")
    assert g["upper"] > 0 and np.isfinite(g["breakpoint"])


def test_bbit_dense_breakpoint_gradient_is_lsq() -> None:
    quant = DualRegionActQuantizer("b-bit", 4, -3.0, 0.375, 3.0)  # D = 3, s_d = 0.125
    x = np.array([0.03, 0.1, -0.2, 0.33], dtype=F32)
    v = x / F32(0.125)
    expected = float(np.sum(np.rint(v) - v) / 3)  # d(s_d k)/d bp = (k - v) / D
    assert _param_grads(quant, x)["breakpoint"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("budget", ["paper", "b-bit", "split"])
@pytest.mark.parametrize("lower", [-3.0, -0.5, 0.0])
def test_gradients_are_finite_everywhere(budget: str, lower: float) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 1, 500), rng.uniform(-20, 20, 500), [0.0, 0.5, -0.5, 3.0]]).astype(F32)
    grads = _param_grads(DualRegionActQuantizer(budget, 4, lower, 0.5, 3.0), x, "mse")
    assert all(np.isfinite(list(grads.values())))
    assert grads["breakpoint"] != 0.0 and grads["upper"] != 0.0


def test_invalid_parameters_are_clamped_in_forward_but_keep_gradients() -> None:
    quant = DualRegionActQuantizer("b-bit", 4, -1.0, 0.5, 2.0)
    with torch.no_grad():
        quant.lower.fill_(0.25)  # pushed above 0 by an optimiser
        quant.upper.fill_(0.4)  # below bp
    act = quant.to_recipe()
    assert act.lower == 0.0 and act.upper > act.breakpoint == 0.5
    x = np.linspace(-3, 3, 101, dtype=F32)
    assert bits_equal(run(quant, x), run(DualRegionActQuantizer.from_recipe(act), x))
    grads = _param_grads(quant, np.array([10.0], dtype=F32))
    assert grads["upper"] != 0.0  # the raw parameter still learns


# ---- recipe round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("budget", ["paper", "b-bit", "split"])
def test_dual_region_recipe_round_trip_after_training(budget: str) -> None:
    rng = np.random.default_rng(2)
    x = torch.from_numpy(np.concatenate([rng.normal(0, 0.3, 2000), rng.uniform(-6, 6, 200)]).astype(F32))
    quant = DualRegionActQuantizer(budget, 4, -2.0, 0.4, 3.0)
    opt = torch.optim.Adam(quant.parameters(), lr=0.01)
    for _ in range(5):
        opt.zero_grad()
        ((quant(x) - x) ** 2).mean().backward()
        opt.step()
    assert quant.upper.item() != F32(3.0)  # it did train
    act = quant.to_recipe(outlier_channels=(1, 4))
    assert act.outlier_channels == (1, 4)
    again = DualRegionActQuantizer.from_recipe(act)
    assert bits_equal(quant(x).detach().numpy(), again(x).detach().numpy())
    assert again.to_recipe(outlier_channels=(1, 4)) == act


def test_split_fixed_outlier_scale_round_trip_and_release() -> None:
    act = DualRegionAct("split", 4, -1.0, 0.25, 2.0, outlier_scale=0.5)
    quant = DualRegionActQuantizer.from_recipe(act)
    assert quant.to_recipe() == act
    quant.use_derived_outlier_scale()
    assert quant.to_recipe().outlier_scale == split_outlier_scale(-1.0, 0.25, 2.0, 4)


# ---- the fused autograd nodes against the same rules written as plain autograd ----------------


def _bbit_composite(x: torch.Tensor, quant: DualRegionActQuantizer) -> torch.Tensor:
    """The `b-bit` fake quantizer as a composition of torch ops with `round_ste` (gradient spec)."""
    lower, bp, upper = quant.bounds()
    d = dense_limit(quant.bits)
    d_t = torch.full_like(bp, float(d))
    s_d, s_p = bp / d_t, (upper - bp) / d_t
    neg_span = (-lower) - bp
    zero = torch.zeros_like(bp)
    s_n = torch.where(neg_span > zero, neg_span / d_t, zero)
    has_neg = s_n > zero
    s_n_safe = torch.where(has_neg, s_n, torch.ones_like(s_n))
    top = d_t * s_d
    dense = (round_ste(torch.clamp(x / s_d, -float(d), float(d))) + 0.0) * s_d
    k_p = round_ste(torch.clamp((x - bp) / s_p, 0.0, float(d)))
    t_p = k_p * s_p
    pos = torch.where(k_p > 0, bp + t_p, top + (t_p - t_p.detach()))
    k_n = round_ste(torch.clamp(((-x) - bp) / s_n_safe, 0.0, float(d)))
    t_n = k_n * s_n
    neg = torch.where((k_n > 0) & has_neg, -(bp + t_n), -top - (t_n - t_n.detach()))
    out = torch.where(torch.abs(x) <= bp, dense, torch.where(x > bp, pos, neg))
    return torch.where(torch.isnan(x), torch.zeros_like(out), out)


def _paper_composite(x: torch.Tensor, quant: DualRegionActQuantizer) -> torch.Tensor:
    """The `paper` fake quantizer as a composition of torch ops with `round_ste` (gradient spec)."""
    lower, bp, upper = quant.bounds()
    full = float(2**quant.bits - 1)
    full_t = torch.full_like(bp, full)
    if bool(lower >= -bp):
        s_lo, s_hi = (bp - lower) / full_t, (upper - bp) / full_t
        low = lower + round_ste(torch.clamp((x - lower) / s_lo, 0.0, full)) * s_lo
        high = bp + round_ste(torch.clamp((x - bp) / s_hi, 0.0, full)) * s_hi
        return torch.where(x <= bp, low, high)
    tail = float(2 ** (quant.bits - 1) - 1)
    tail_t = torch.full_like(bp, tail)
    s_d, s_p, s_n = (bp + bp) / full_t, (upper - bp) / tail_t, ((-lower) - bp) / tail_t
    dense = (-bp) + round_ste(torch.clamp((x + bp) / s_d, 0.0, full)) * s_d
    pos = bp + round_ste(torch.clamp((x - bp) / s_p, 0.0, tail)) * s_p
    neg = -(bp + round_ste(torch.clamp(((-x) - bp) / s_n, 0.0, tail)) * s_n)
    return torch.where(torch.abs(x) <= bp, dense, torch.where(x > bp, pos, neg))


COMPOSITES = {"b-bit": _bbit_composite, "paper": _paper_composite}


@pytest.mark.parametrize("budget", ["b-bit", "paper"])
@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("lower", [-3.0, -0.6, -0.2, 0.0])
def test_fused_node_matches_composite_autograd(budget: str, bits: int, lower: float) -> None:
    rng = np.random.default_rng(bits)
    x_np = np.concatenate(
        [rng.normal(0, 0.5, 3000), rng.uniform(-8, 8, 1000), [0.5, -0.5, 4.0, lower]]
    ).astype(F32)
    weight = torch.from_numpy(rng.standard_normal(x_np.size).astype(F32))
    outs, grads = [], []
    for fn in (lambda t, q: q(t), COMPOSITES[budget]):
        quant = DualRegionActQuantizer(budget, bits, lower, 0.5, 4.0)
        x = torch.tensor(x_np, requires_grad=True)
        out = fn(x, quant)
        (out * weight).sum().backward()
        outs.append(out.detach().numpy())
        grads.append([x.grad.numpy()] + [p.grad.item() for p in (quant.lower, quant.breakpoint, quant.upper)])
    assert bits_equal(outs[0], outs[1])
    # the fused node passes the incoming gradient exactly (or 0); the composite's chain
    # (g * s) / s may be an ulp off
    fused_gx = grads[0][0]
    assert np.all((fused_gx == weight.numpy()) | (fused_gx == 0))
    np.testing.assert_allclose(fused_gx, grads[1][0], rtol=1e-6, atol=0)
    for fused, composite in zip(grads[0][1:], grads[1][1:], strict=True):
        assert np.isfinite(fused) and fused == pytest.approx(composite, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("budget", ["b-bit", "paper"])
def test_fused_gradients_stay_finite_on_inf_and_nan(budget: str) -> None:
    # (the composite formulation gives NaN here: 0 * inf in the clamped division's gradient)
    x = torch.tensor([np.nan, np.inf, -np.inf, 0.3, 7.0], requires_grad=True)
    quant = DualRegionActQuantizer(budget, 4, -3.0, 0.5, 4.0)
    out = quant(x)
    # b-bit encodes NaN as code 0 (docs/dual_region_codes.md); the paper simulation propagates it
    assert (out[0].item() == 0.0) if budget == "b-bit" else np.isnan(out[0].item())
    assert out[1].item() == pytest.approx(4.0) and out[2].item() == pytest.approx(-3.0)
    (torch.nan_to_num(out)).sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0, 1.0, 0.0]
    assert all(np.isfinite(p.grad.item()) for p in quant.parameters())


@pytest.mark.gpu
def test_cuda_forward_equals_numpy_bitwise() -> None:
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 0.4, 20000), rng.uniform(-9, 9, 2000)]).astype(F32)
    for bits in (2, 4, 8):
        lower, bp, upper = _random_bounds(rng)
        paper = DualRegionActQuantizer("paper", bits, lower, bp, upper).cuda()
        split = DualRegionActQuantizer("split", bits, lower, bp, upper).cuda()
        uniform = UniformActQuantizer(bits, 0.037, 0, True).cuda()
        xc = torch.from_numpy(x).cuda()
        assert bits_equal(paper(xc).detach().cpu().numpy(), np_paper(x, paper.to_recipe()))
        assert bits_equal(split(xc).detach().cpu().numpy(), np_split(x, split.to_recipe()))
        assert bits_equal(uniform(xc).detach().cpu().numpy(), np_uniform(x, uniform.to_recipe()))
    w = rng.standard_normal((16, 8, 3, 3)).astype(F32)
    scale = rng.uniform(0.01, 0.3, 16).astype(F32)
    wq = WeightQuantizer(4, torch.from_numpy(scale), 0).cuda()
    assert bits_equal(wq(torch.from_numpy(w).cuda()).detach().cpu().numpy(), np_weight(w, wq.to_recipe()))
