"""The NumPy reference follows docs/dual_region_codes.md; params validation names the bad entry."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.errors import PluginError
from plugins.reference import dequantize, quantize
from plugins.spec import pack_params, validate_params
from tests.plugins.edge_cases import all_codes, float_inputs, params_sets

P8 = pack_params(1.0, 0.015625, 0.5, 0.25, 63)  # power-of-two steps: hand-checkable


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.nan, 1.0, 1.0, 1.0, 63), "params: every entry must be finite"),
        ((0.0, 1.0, 1.0, 1.0, 63), "params: breakpoint bp must be > 0, got 0.0"),
        ((1.0, 0.0, 1.0, 1.0, 63), "params: dense step s_d must be > 0, got 0.0"),
        ((1.0, 1.0, -1.0, 1.0, 63), "params: positive-tail step s_p must be > 0, got -1.0"),
        ((1.0, 1.0, 1.0, -0.5, 63), "params: negative-tail step s_n must be >= 0, got -0.5"),
        ((1.0, 1.0, 1.0, 0.0, 64), "params: dense limit D must be an integer in 1..63, got 64.0"),
        ((1.0, 1.0, 1.0, 0.0, 0), "params: dense limit D must be an integer in 1..63, got 0.0"),
        ((1.0, 1.0, 1.0, 0.0, 2.5), "params: dense limit D must be an integer in 1..63, got 2.5"),
    ],
)
def test_pack_params_rejects(args: tuple, message: str) -> None:
    with pytest.raises(PluginError) as info:
        pack_params(*args)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_validate_params_shape_and_dtype() -> None:
    with pytest.raises(PluginError, match=r"params: need float32, got float64"):
        validate_params(np.ones(5))
    with pytest.raises(PluginError, match=r"params: need shape \(5,\)"):
        validate_params(np.ones(4, np.float32))
    assert validate_params(P8).dtype == np.float32


def test_pack_params_layout() -> None:
    p = pack_params(0.5, 0.25, 0.125, 0.0, 3)
    assert p.dtype == np.float32
    assert p.tolist() == [0.5, 0.25, 0.125, 0.0, 3.0]


def test_quantize_hand_values() -> None:
    x = np.array(
        [
            0.0,
            0.5 * 0.015625,
            1.5 * 0.015625,
            -2.5 * 0.015625,
            1.0,
            1.25,
            1.75,
            1.2,
            100.0,
            np.inf,
            -np.inf,
            np.nan,
            -1.125,
            -1.375,
            -1000.0,
            -1.0,
        ],
        np.float32,
    )
    # ties go to even: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2; 1.25 is a tail tie (0.5 steps) -> D + 0,
    # 1.75 -> D + 2 (1.5 -> 2); -1.125 -> tail tie 0.5 -> -D; -1.375 -> 1.5 -> -(D + 2)
    expect = [0, 0, 2, -2, 63, 63, 65, 63, 126, 126, -126, 0, -63, -65, -126, -63]
    assert quantize(x, P8).tolist() == expect
    assert quantize(x.astype(np.float16), P8).tolist() == expect


def test_quantize_without_negative_tail_saturates_at_minus_d() -> None:
    p = pack_params(1.0, 0.015625, 0.5, 0.0, 63)
    assert quantize(np.array([-1.0, -1.5, -np.inf, -5.0], np.float32), p).tolist() == [-63, -63, -63, -63]


def test_dequantize_hand_values() -> None:
    codes = np.array([0, 1, -1, 63, -63, 64, 126, 127, -64, -126, -127, -128], np.int8)
    expect = [0.0, 0.015625, -0.015625, 0.984375, -0.984375, 1.5, 32.5, 32.5, -1.25, -16.75, -16.75, -16.75]
    # q = 63 is the dense edge 63 * s_d (0.984375 here: these power-of-two steps leave a gap below bp)
    assert dequantize(codes, P8).tolist() == expect
    assert dequantize(codes, P8, np.float16).dtype == np.float16


def test_dequantize_float16_rounds_once_to_nearest_even() -> None:
    p = pack_params(1.0, np.float32(1.0) / np.float32(63), 0.7, 0.3, 63)
    codes = all_codes()
    assert np.array_equal(dequantize(codes, p, np.float16), dequantize(codes, p).astype(np.float16))


@pytest.mark.parametrize("name", sorted(params_sets()))
def test_codes_round_trip(name: str) -> None:
    """Decoding a produced code and encoding it again gives the same code (the grids are consistent)."""
    p = params_sets()[name]
    d = int(p[4])
    codes = np.arange(-2 * d, 2 * d + 1, dtype=np.int16).astype(np.int8)
    if p[3] == 0:
        codes = codes[codes >= -d]
    assert np.array_equal(quantize(dequantize(codes, p), p), codes)


@pytest.mark.parametrize("name", sorted(params_sets()))
def test_quantize_range_and_nan(name: str) -> None:
    p = params_sets()[name]
    x = float_inputs(p, n_random=2000)
    q = quantize(x, p).astype(int)
    d = int(p[4])
    assert q.min() >= -2 * d and q.max() <= 2 * d
    assert np.all(q[np.isnan(x)] == 0)
    # monotone: sorting the finite inputs sorts the codes
    finite = np.sort(x[np.isfinite(x)])
    assert np.all(np.diff(quantize(finite, p).astype(int)) >= 0)


def test_rejects_wrong_dtypes() -> None:
    with pytest.raises(PluginError, match="quantize: input must be float16 or float32, got float64"):
        quantize(np.zeros(3), P8)
    with pytest.raises(PluginError, match="dequantize: codes must be int8, got int32"):
        dequantize(np.zeros(3, np.int32), P8)
    with pytest.raises(PluginError, match="dequantize: out_dtype must be float32 or float16, got float64"):
        dequantize(np.zeros(3, np.int8), P8, np.float64)
