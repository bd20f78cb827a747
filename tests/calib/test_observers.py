"""Observers on known distributions: exact minmax/EMA, percentile within a bin, entropy and MSE clip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.observers import (
    AbsHistogram,
    DualRegionObserver,
    MinMaxObserver,
    dual_region_init,
    entropy_amax,
    entropy_levels,
    mse_amax,
    outlier_channels,
    percentile_amax,
    split_breakpoint_mse,
    weight_scale_minmax,
    weight_scale_mse,
)


def test_minmax_first_batch_initialises_then_ema():
    obs = MinMaxObserver(beta=0.9)
    obs.collect(torch.tensor([[-1.0, 2.0]]))
    assert (obs.min, obs.max) == (-1.0, 2.0)
    obs.collect(torch.tensor([[-3.0, 4.0]]))
    assert obs.min == pytest.approx(0.9 * -1.0 + 0.1 * -3.0)
    assert obs.max == pytest.approx(0.9 * 2.0 + 0.1 * 4.0)
    assert obs.amax == pytest.approx(2.2)


def test_minmax_channel_absmax_is_true_max_and_std_is_per_sample_mean():
    obs = MinMaxObserver()
    x = torch.zeros(2, 3, 2, 2)
    x[0, 1, 0, 0] = -5.0
    x[1, 2, 1, 1] = 7.0
    obs.collect(x)
    obs.collect(torch.zeros(2, 3, 2, 2))
    assert obs.channel_absmax.tolist() == [0.0, 5.0, 7.0]
    expected = (x[0].std(unbiased=False) + x[1].std(unbiased=False) + 0 + 0) / 4
    assert obs.mean_std == pytest.approx(float(expected))


def test_histogram_grows_by_exact_pair_merging():
    hist = AbsHistogram(bins=8)
    hist.collect(torch.tensor([0.1, 0.5, 0.8]))  # width 0.1
    assert hist.width == pytest.approx(0.1)
    hist.collect(torch.tensor([2.0]))  # needs width 0.4 (two doublings)
    assert hist.width == pytest.approx(0.4)
    assert hist.counts.sum() == 4
    # 0.1, 0.5 (bin 1 of width 0.1 -> bin 5 -> merged 5//4 = 1), 0.8 (bin 7 -> 1), 2.0 (bin 5)
    assert hist.counts.tolist() == [1, 2, 0, 0, 0, 1, 0, 0]


def test_percentile_within_one_bin():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=gen)
    hist = AbsHistogram()
    for chunk in x.split(50_000):
        hist.collect(chunk)
    for p in (50.0, 99.0, 99.99):
        want = float(np.percentile(x.abs().numpy(), p))
        assert abs(percentile_amax(hist, p) - want) <= hist.width


def test_entropy_clips_heavy_tails_but_not_uniform_data():
    gen = torch.Generator().manual_seed(1)
    heavy = torch.distributions.StudentT(2.0).sample((400_000,))
    hist = AbsHistogram()
    hist.collect(heavy)
    amax = float(heavy.abs().max())
    threshold = entropy_amax(hist)
    assert threshold < 0.2 * amax
    assert threshold > float(np.percentile(heavy.abs().numpy(), 90))
    flat = AbsHistogram()
    flat.collect(torch.rand(400_000, generator=gen))
    assert entropy_amax(flat) > 0.9


def test_mse_clip_prefers_clipping_a_lone_outlier():
    gen = torch.Generator().manual_seed(2)
    x = torch.cat([torch.randn(100_000, generator=gen), torch.tensor([40.0])])
    hist = AbsHistogram()
    hist.collect(x)
    amax = mse_amax(hist, bits=4)
    assert 1.0 < amax < 6.0


def test_dual_region_init_bounded_below_and_signed():
    x = torch.relu(torch.randn(4, 8, 16, 16, generator=torch.Generator().manual_seed(3)))
    mm, dual = MinMaxObserver(), DualRegionObserver(percentile=99.0)
    mm.collect(x)
    dual.collect(x)
    init = dual_region_init(mm, dual)
    assert init.lower == 0.0
    want_bp = float(torch.sort(x.flatten()).values[int(np.ceil(0.99 * x.numel())) - 1])
    assert init.breakpoint == pytest.approx(want_bp)
    assert init.upper == pytest.approx(float(x.max()))
    signed = torch.randn(4, 8, 16, 16, generator=torch.Generator().manual_seed(4))
    mm2, dual2 = MinMaxObserver(), DualRegionObserver()
    mm2.collect(signed)
    dual2.collect(signed)
    init2 = dual_region_init(mm2, dual2)
    assert init2.lower == pytest.approx(float(signed.min()))
    assert init2.lower < -init2.breakpoint < 0 < init2.breakpoint < init2.upper


def test_dual_region_bp_is_ema_of_batch_percentiles():
    dual = DualRegionObserver(percentile=50.0, beta=0.9)
    dual.collect(torch.tensor([1.0, 2.0, 3.0, 4.0]))  # k = 2 -> 2.0
    dual.collect(torch.tensor([10.0, 20.0, 30.0, 40.0]))  # 20.0
    assert dual.bp == pytest.approx(0.9 * 2.0 + 0.1 * 20.0)


def test_outlier_channels_beyond_breakpoint():
    assert outlier_channels(torch.tensor([0.5, 3.0, 1.0, 9.0]), 1.0) == (1, 3)


def test_weight_scales_minmax_and_mse():
    w = torch.zeros(2, 1, 1, 4)
    w[0, 0, 0] = torch.tensor([0.1, -0.2, 0.3, -0.7])
    w[1, 0, 0] = torch.tensor([0.01, 0.02, 0.03, 0.04])
    assert weight_scale_minmax(w, 4, 0).tolist() == pytest.approx([0.1, 0.04 / 7])
    assert weight_scale_minmax(w, 4, None).tolist() == pytest.approx([0.1])
    # Mostly small weights with one outlier: the MSE search shrinks the range below absmax.
    gen = torch.Generator().manual_seed(5)
    w2 = torch.randn(4, 16, 3, 3, generator=gen) * 0.05
    w2[0, 0, 0, 0] = 1.0
    mse = weight_scale_mse(w2, 4, 0)
    mm = weight_scale_minmax(w2, 4, 0)
    assert float(mse[0]) < float(mm[0])
    assert torch.all(mse <= mm + 1e-9)
    # Each candidate is a 1% step of absmax.
    ratio = (mse / mm).numpy()
    assert np.allclose(ratio * 100, np.round(ratio * 100), atol=1e-3)


def test_entropy_levels_follow_the_bit_width():
    assert [entropy_levels(b) for b in (4, 6, 8)] == [8, 32, 128]
    # A 4-bit grid searched with its own 8 levels clips a Gaussian harder than the int8 search would,
    # and that threshold quantizes it to 4 bits with less error.
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0))
    hist = AbsHistogram()
    hist.collect(x)
    own, int8 = entropy_amax(hist, entropy_levels(4)), entropy_amax(hist, entropy_levels(8))
    assert own < 0.95 * int8

    def mse4(amax: float) -> float:
        step = amax / 7
        return float(((torch.clamp(torch.round(x / step), -7, 7) * step - x) ** 2).mean())

    assert mse4(own) < mse4(int8)


def _split_mse(x: torch.Tensor, bp: float, span: float, bits: int) -> float:
    q = 2 ** (bits - 1) - 1
    dense = torch.clamp(x, -bp, bp)
    approx = torch.clamp(torch.round(dense / (bp / q)), -q, q) * (bp / q)
    s_o = (span - bp) / q
    approx = approx + torch.clamp(torch.round((x - dense) / s_o), -q, q) * s_o
    return float(((approx - x) ** 2).mean())


def test_split_breakpoint_halves_a_uniform_input_and_beats_the_percentile():
    # Image-like input on [0, 1]: the best split puts half the range in each branch (254 steps in all).
    x = torch.rand(400_000, generator=torch.Generator().manual_seed(1))
    hist = AbsHistogram()
    hist.collect(x)
    bp = split_breakpoint_mse(hist, 0.0, 1.0, 8, initial=0.99)
    assert bp == pytest.approx(0.5, abs=0.02)
    assert _split_mse(x, bp, 1.0, 8) < 0.5 * _split_mse(x, 0.99, 1.0, 8)


def test_split_breakpoint_stays_low_for_heavy_tails_and_keeps_an_optimal_initial():
    g = torch.Generator().manual_seed(2)
    x = torch.cat([torch.randn(200_000, generator=g) * 0.1, torch.randn(200, generator=g) * 5.0])
    hist = AbsHistogram()
    hist.collect(x)
    span = float(x.abs().max())
    bp = split_breakpoint_mse(hist, float(x.min()), float(x.max()), 4, initial=span * 0.9)
    assert bp < 0.2 * span
    assert _split_mse(x, bp, span, 4) < _split_mse(x, span * 0.9, span, 4)
    # The initial breakpoint is a candidate: when it is the search's own answer it comes back exactly.
    assert split_breakpoint_mse(hist, float(x.min()), float(x.max()), 4, initial=bp) == bp
