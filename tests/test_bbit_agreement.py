"""The torch `b-bit` fake quantizer equals the plugin's NumPy reference (quantize, dequantize) bit for bit.

This is the contract that lets the TensorRT plugin deploy exactly what calibration simulated.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from calib.quantizers import DualRegionActQuantizer
from drq.grids import bbit_grid

reference = pytest.importorskip("plugins.reference")

_F32 = np.float32


def _inputs(act, rng: np.random.Generator) -> np.ndarray:
    """Dense values, outliers, exact ties of every grid, the bounds, beyond them, and specials."""
    grid = bbit_grid(act)
    bp, s_d, s_p, s_n, d = grid.breakpoint, grid.s_d, grid.s_p, grid.s_n, grid.dense_limit
    p, n = grid.pos_tail_codes, grid.neg_tail_codes
    k = np.arange(-d - 1, d + 1, dtype=_F32)
    ties = [(k + _F32(0.5)) * s_d, bp + (np.arange(0, p + 1, dtype=_F32) + _F32(0.5)) * s_p]
    if s_n > 0:
        ties.append(-(bp + (np.arange(0, n + 1, dtype=_F32) + _F32(0.5)) * s_n))
    lo, up = _F32(act.lower), _F32(act.upper)
    span = max(float(up), float(-lo), float(bp)) * 1.5
    parts = [
        rng.normal(0.0, float(bp) / 2, 2000).astype(_F32),  # dense bulk
        rng.uniform(-span, span, 2000).astype(_F32),  # outliers and beyond the bounds
        np.linspace(-span, span, 4001, dtype=_F32),
        *ties,
        np.array(
            [
                0.0,
                -0.0,
                bp,
                -bp,
                up,
                lo,
                np.nextafter(bp, _F32(np.inf)),
                np.nextafter(-bp, _F32(-np.inf)),
                up * 4,
                lo * 4 - 1,
                1e-30,
                -1e-30,
                np.inf,
                -np.inf,
                np.nan,
            ],
            dtype=_F32,
        ),
    ]
    return np.concatenate(parts).astype(_F32)


def _act(bits: int, lower: float, bp: float, upper: float, split: tuple[int, int, int] | None = None):
    from drq.recipe import CODE_SPLIT_FIELDS, DualRegionAct, f32

    codes = {} if split is None else dict(zip(CODE_SPLIT_FIELDS, split, strict=True))
    return DualRegionAct(
        budget="b-bit", bits=bits, lower=f32(lower), breakpoint=f32(bp), upper=f32(upper), **codes
    )


def _splits(bits: int) -> list[tuple[int, int, int]]:
    """Searched code splits: D = 1 (all tails), a middle D, the widest dense region, and P != N."""
    top = 2 ** (bits - 1)
    middle = max(1, top // 2)
    return [(1, top - 2, top - 1), (middle, top - 1 - middle, top - middle), (top - 2, 1, 2), (1, 1, top - 1)]


CASES = [
    # (lower, bp, upper): signed tails, asymmetric, bounded below (ReLU, l = -bp exactly, -bp < l < 0)
    (-3.7, 0.31, 5.3),
    (-0.45, 0.4, 9.0),
    (0.0, 0.123, 1.7),
    (-0.25, 0.25, 2.0),
    (-0.1, 0.6, 0.7),
]


@pytest.mark.parametrize("bits", [3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("bounds", CASES, ids=["signed", "asym", "relu", "l=-bp", "bounded"])
def test_torch_bbit_equals_reference_bitwise(bits: int, bounds: tuple[float, float, float]) -> None:
    rng = np.random.default_rng(bits * 100 + CASES.index(bounds))
    act = _act(bits, *bounds)
    params = bbit_grid(act).params()
    x = _inputs(act, rng)
    expected = reference.dequantize(reference.quantize(x, params), params)
    got = DualRegionActQuantizer.from_recipe(act)(torch.from_numpy(x)).detach().numpy()
    mismatch = np.flatnonzero(got.view(np.uint32) != expected.view(np.uint32))
    assert mismatch.size == 0, (
        f"{mismatch.size} differ, first x={x[mismatch[0]]!r}: "
        f"{got[mismatch[0]]!r} != {expected[mismatch[0]]!r}"
    )


@pytest.mark.parametrize("bits", [3, 8])
def test_agreement_holds_for_random_bounds(bits: int) -> None:
    rng = np.random.default_rng(bits)
    for _ in range(20):
        bp = float(rng.uniform(0.01, 2.0))
        upper = bp + float(rng.uniform(1e-3, 20.0))
        lower = -float(rng.uniform(0.0, 10.0)) if rng.random() < 0.7 else -float(rng.uniform(0.0, bp))
        act = _act(bits, lower, bp, upper)
        params = bbit_grid(act).params()
        x = _inputs(act, rng)
        expected = reference.dequantize(reference.quantize(x, params), params)
        got = DualRegionActQuantizer.from_recipe(act)(torch.from_numpy(x)).detach().numpy()
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (lower, bp, upper)


@pytest.mark.parametrize("bits", [3, 4, 6, 8])
@pytest.mark.parametrize("bounds", CASES, ids=["signed", "asym", "relu", "l=-bp", "bounded"])
def test_torch_bbit_with_searched_splits_equals_reference_bitwise(
    bits: int, bounds: tuple[float, float, float]
) -> None:
    """Any code split (D, P, N) of the recipe: torch fake quantizer == reference, bit for bit."""
    rng = np.random.default_rng(bits * 1000 + CASES.index(bounds))
    for split in _splits(bits):
        act = _act(bits, *bounds, split=split)
        params = bbit_grid(act).params()
        assert params.tolist()[4:] == [float(v) for v in split]
        x = _inputs(act, rng)
        expected = reference.dequantize(reference.quantize(x, params), params)
        got = DualRegionActQuantizer.from_recipe(act)(torch.from_numpy(x)).detach().numpy()
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), (split, bounds)


def test_agreement_detects_a_different_grid() -> None:
    """The comparison is sharp: a quantizer one float32 ulp off in bp disagrees somewhere."""
    act = _act(4, -2.0, 0.3, 3.0)
    params = bbit_grid(act).params()
    x = _inputs(act, np.random.default_rng(0))
    expected = reference.dequantize(reference.quantize(x, params), params)
    shifted = DualRegionActQuantizer("b-bit", 4, -2.0, float(np.nextafter(_F32(0.3), _F32(1))), 3.0)
    got = shifted(torch.from_numpy(x)).detach().numpy()
    assert not np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    # ... and so does one with the same bounds but another code split
    other = DualRegionActQuantizer("b-bit", 4, -2.0, 0.3, 3.0, code_split=(4, 3, 3))
    got = other(torch.from_numpy(x)).detach().numpy()
    assert not np.array_equal(got.view(np.uint32), expected.view(np.uint32))


@pytest.mark.gpu
@pytest.mark.parametrize("bits", [3, 4, 8])
def test_cuda_bbit_equals_reference_bitwise(bits: int) -> None:
    """On the GPU too: true divisions by device tensors, no fused multiply-add across ops."""
    rng = np.random.default_rng(bits)
    for bounds in CASES:
        act = _act(bits, *bounds)
        params = bbit_grid(act).params()
        x = _inputs(act, rng)
        expected = reference.dequantize(reference.quantize(x, params), params)
        quant = DualRegionActQuantizer.from_recipe(act).cuda()
        got = quant(torch.from_numpy(x).cuda()).detach().cpu().numpy()
        assert np.array_equal(got.view(np.uint32), expected.view(np.uint32)), bounds
