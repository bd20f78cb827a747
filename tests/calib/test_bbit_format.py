"""The b-bit format search: never worse than uniform or schema 1 on the histogram, and a valid recipe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.bbit_format import SignedHistogram, search_bbit_format
from calib.quantizers import DualRegionActQuantizer
from drq.recipe import default_dense_limit


def _hist(x: torch.Tensor) -> SignedHistogram:
    hist = SignedHistogram()
    for chunk in x.split(50_000):
        hist.collect(chunk)
    return hist


def _samples(kind: str) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    lap = torch.distributions.Laplace(0.0, 1.0).sample((50_000,))
    if kind == "laplace":
        return lap
    if kind == "lrelu":  # LeakyReLU(0.05) features: a small negative side
        return torch.where(lap > 0, lap, 0.05 * lap)
    if kind == "image":  # the head's input: [0, 1], no negative values
        return torch.rand(50_000, generator=gen)
    return torch.cat([torch.randn(49_500, generator=gen) * 0.1, torch.randn(500, generator=gen) * 8])


def _init(x: torch.Tensor) -> tuple[float, float, float]:
    return min(float(x.min()), 0.0), float(x.abs().quantile(0.99)), float(x.max())


def _mse(x: torch.Tensor, quant: DualRegionActQuantizer) -> float:
    return float(((quant(x) - x) ** 2).mean())


@pytest.mark.parametrize("clip", [False, True])
@pytest.mark.parametrize("kind", ["laplace", "lrelu", "image", "outliers"])
@pytest.mark.parametrize("bits", [3, 4, 8])
def test_search_never_loses_to_uniform_or_schema_1(kind: str, bits: int, clip: bool) -> None:
    x = _samples(kind)
    lower, bp, upper = _init(x)
    fmt = search_bbit_format(_hist(x), bits, lower, bp, upper, clip=clip)
    if not clip:  # the grid reaches the largest magnitudes seen (histogram bin resolution)
        assert fmt.upper >= float(x.max()) * 0.999
        assert -fmt.lower >= float(-x.min()) * 0.999 or -float(x.min()) <= fmt.breakpoint
    assert fmt.error <= fmt.uniform_error + 1e-12
    assert fmt.error <= fmt.default_error + 1e-12
    d, p, n = fmt.code_split
    assert d + p <= 2 ** (bits - 1) - 1 and d + n <= 2 ** (bits - 1)
    assert fmt.lower <= 0 < fmt.breakpoint < fmt.upper
    # the chosen format is a valid recipe quantizer, and on the samples themselves (not only the
    # histogram's bin centres) it beats schema 1's fixed split with the paper's percentile breakpoint
    searched = DualRegionActQuantizer(
        "b-bit", bits, fmt.lower, fmt.breakpoint, fmt.upper, code_split=fmt.code_split
    )
    fixed = DualRegionActQuantizer("b-bit", bits, lower, bp, max(upper, bp * 1.01))
    assert _mse(x, searched) <= _mse(x, fixed) * 1.02


def test_search_uses_the_code_range_schema_1_leaves_unused() -> None:
    """At 4 bits schema 1 has 13 levels (|q| <= 6); the searched split reaches -8 and 7."""
    x = _samples("laplace")
    fmt = search_bbit_format(_hist(x), 4, *_init(x))
    d, p, n = fmt.code_split
    assert (d + p, d + n) == (7, 8)
    assert (d, p, n) != (default_dense_limit(4),) * 3
    assert fmt.error < 0.8 * fmt.uniform_error  # non-uniform steps pay off on a peaked distribution


def test_search_needs_data() -> None:
    with pytest.raises(ValueError, match="only zeros"):
        search_bbit_format(_hist(torch.zeros(10)), 4, 0.0, 1.0, 2.0)
    assert np.isfinite(search_bbit_format(_hist(torch.ones(10)), 4, 0.0, 0.5, 1.0).error)
