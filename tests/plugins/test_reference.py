"""The NumPy reference follows docs/dual_region_codes.md; params validation names the bad entry."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.errors import PluginError
from plugins.reference import dequantize, quantize
from plugins.spec import pack_params, validate_params
from tests.plugins.edge_cases import all_codes, code_range, float_inputs, params_sets

POS_TAIL = "params: positive tail codes P must be an integer in"
P8 = pack_params(1.0, 0.015625, 0.5, 0.25, 63)  # power-of-two steps: hand-checkable


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((np.nan, 1.0, 1.0, 1.0, 63), "params: every entry must be finite"),
        ((0.0, 1.0, 1.0, 1.0, 63), "params: breakpoint bp must be > 0, got 0.0"),
        ((1.0, 0.0, 1.0, 1.0, 63), "params: dense step s_d must be > 0, got 0.0"),
        ((1.0, 1.0, -1.0, 1.0, 63), "params: positive-tail step s_p must be > 0, got -1.0"),
        ((1.0, 1.0, 1.0, -0.5, 63), "params: negative-tail step s_n must be >= 0, got -0.5"),
        ((1.0, 1.0, 1.0, 0.0, 127, 1, 1), "params: dense limit D must be an integer in 1..126, got 127.0"),
        ((1.0, 1.0, 1.0, 0.0, 0), "params: dense limit D must be an integer in 1..126, got 0.0"),
        ((1.0, 1.0, 1.0, 0.0, 2.5), "params: dense limit D must be an integer in 1..126, got 2.5"),
        ((1.0, 1.0, 1.0, 0.0, 64), f"{POS_TAIL} 1..127 - D, got 64.0"),
        ((1.0, 1.0, 1.0, 0.0, 3, 0, 3), f"{POS_TAIL} 1..127 - D, got 0.0"),
        ((1.0, 1.0, 1.0, 0.0, 3, 3, 1.5), "params: negative tail codes N must be an integer in 1..128 - D"),
        ((1.0, 1.0, 1.0, 0.0, 100, 27, 29), "params: negative tail codes N must be an integer in 1..128 - D"),
    ],
)
def test_pack_params_rejects(args: tuple, message: str) -> None:
    with pytest.raises(PluginError) as info:
        pack_params(*args)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_validate_params_shape_and_dtype() -> None:
    with pytest.raises(PluginError, match=r"params: need float32, got float64"):
        validate_params(np.ones(7))
    with pytest.raises(PluginError, match=r"params: need shape \(7,\)"):
        validate_params(np.ones(5, np.float32))  # the schema-1 layout without P and N
    assert validate_params(P8).dtype == np.float32


def test_pack_params_layout() -> None:
    p = pack_params(0.5, 0.25, 0.125, 0.0, 3)
    assert p.dtype == np.float32
    assert p.tolist() == [0.5, 0.25, 0.125, 0.0, 3.0, 3.0, 3.0]  # tails default to D codes each
    assert pack_params(0.5, 0.25, 0.125, 0.0, 3, 4, 5).tolist()[4:] == [3.0, 4.0, 5.0]
    assert pack_params(0.5, 0.25, 0.125, 0.0, 1, 126, 127).tolist()[4:] == [1.0, 126.0, 127.0]


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
    lo, hi = code_range(p)
    codes = np.arange(lo, hi + 1, dtype=np.int16).astype(np.int8)
    assert np.array_equal(quantize(dequantize(codes, p), p), codes)


@pytest.mark.parametrize("name", sorted(params_sets()))
def test_quantize_range_and_nan(name: str) -> None:
    p = params_sets()[name]
    x = float_inputs(p, n_random=2000)
    q = quantize(x, p).astype(int)
    lo, hi = code_range(p)
    assert q.min() == lo and q.max() == hi  # the inputs reach both ends of the code range
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


def test_searched_split_hand_values() -> None:
    """D = 5, P = 2, N = 3 (a searched 4-bit split): codes -8..7, the int8 ends of the 4-bit range."""
    p = pack_params(0.5, 0.1, 0.25, 0.5, 5, 2, 3)
    x = np.array([0.0, 0.26, 0.5, 0.62, 0.63, 0.75, 0.9, 99.0, -0.5, -0.74, -0.76, -1.6, -99.0], np.float32)
    # 0.62: (0.62 - 0.5) / 0.25 = 0.48 -> 0 -> code 5; 0.63 -> 0.52 -> 6; 0.9 -> 1.6 -> 7; 99 saturates
    # at D + P = 7;
    # -0.74 -> 0.48 -> -5; -0.76 -> 0.52 -> -6; -1.6 -> 2.2 -> -7; -99 saturates at -(D + N) = -8
    expect = [0, 3, 5, 5, 6, 6, 7, 7, -5, -5, -6, -7, -8]
    assert quantize(x, p).tolist() == expect
    codes = np.array([-128, -9, -8, -7, -6, -5, 0, 5, 6, 7, 8, 127], np.int8)
    values = [-2.0, -2.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert dequantize(codes, p).tolist() == values  # beyond the range: saturate at -(D + N) and D + P
