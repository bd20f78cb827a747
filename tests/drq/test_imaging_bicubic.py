"""MATLAB bicubic imresize: bit-exact on the shared benchmarks, equal to a loop reference, MATLAB rounding."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from drq.errors import ImageError
from drq.imaging.bicubic import contributions, cubic, imresize
from drq.imaging.io import read_image


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("dataset, count", [("Set5", 5), ("Set14", 14), ("B100", 100)])
def test_reproduces_benchmark_lr_from_hr(shared_dir: Path, dataset: str, count: int, scale: int) -> None:
    folder = shared_dir / "sr_bench" / dataset / f"x{scale}"
    if not folder.is_dir():
        pytest.skip(f"needs {folder}")
    names = sorted(p.name for p in (folder / "HR").glob("*.png"))
    assert len(names) == count
    for name in names:
        hr = read_image(folder / "HR" / name)
        lr = read_image(folder / "LR" / name)
        ours = imresize(hr, 1 / scale)
        assert ours.dtype == np.uint8 and ours.shape == lr.shape
        assert _psnr(ours, lr) >= 45.0, name
        # Stronger than the 45 dB bar: MATLAB's edge clamping plus per-pass uint8 rounding is exact.
        np.testing.assert_array_equal(ours, lr, err_msg=name)


def _reference_1d(line: np.ndarray, out_length: int, scale: float) -> np.ndarray:
    """Per-output-pixel loop over every input position the (antialiased) kernel can reach."""
    n = len(line)
    stretch = scale < 1
    width = 4 / scale if stretch else 4
    out = np.zeros(out_length)
    for i in range(1, out_length + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        total = weight_sum = 0.0
        for j in range(math.floor(u - width / 2) - 1, math.ceil(u + width / 2) + 2):
            x = u - j
            w = scale * float(cubic(np.array(scale * x))) if stretch else float(cubic(np.array(x)))
            total += w * line[min(max(j, 1), n) - 1]
            weight_sum += w
        out[i - 1] = total / weight_sum
    return out


def _reference(img: np.ndarray, out_shape: tuple[int, int], scales: tuple[float, float]) -> np.ndarray:
    order = sorted(range(2), key=lambda d: scales[d])
    out = img.astype(np.float64)
    for dim in order:
        moved = np.moveaxis(out, dim, 0)
        columns = [_reference_1d(moved[:, k], out_shape[dim], scales[dim]) for k in range(moved.shape[1])]
        res = np.stack(columns, 1)
        out = np.moveaxis(res, 0, dim)
    return out


@pytest.mark.parametrize(
    ("scale", "output_shape"),
    [(0.5, None), (1 / 3, None), (2.0, None), (3.0, None), ((0.5, 2.0), None), (None, (5, 13))],
)
def test_float_matches_loop_reference(scale: object, output_shape: object) -> None:
    rng = np.random.default_rng(3)
    img = rng.random((9, 7))
    ours = imresize(img, scale=scale, output_shape=output_shape)
    if output_shape is None:
        pair = scale if isinstance(scale, tuple) else (scale, scale)
        shape = (math.ceil(9 * pair[0]), math.ceil(7 * pair[1]))
    else:
        shape = output_shape
        pair = (shape[0] / 9, shape[1] / 7)
    assert ours.shape == shape and ours.dtype == np.float64
    np.testing.assert_allclose(ours, _reference(img, shape, pair), rtol=0, atol=1e-12)


def test_channels_resize_independently_and_float32_is_kept() -> None:
    rng = np.random.default_rng(4)
    img = rng.random((6, 8, 3)).astype(np.float32)
    ours = imresize(img, 0.5)
    assert ours.dtype == np.float32 and ours.shape == (3, 4, 3)
    for c in range(3):
        np.testing.assert_allclose(ours[:, :, c], imresize(img[:, :, c].astype(np.float64), 0.5), atol=1e-6)


def test_constant_image_stays_constant_and_scale_one_is_identity() -> None:
    flat = np.full((10, 12, 3), 77, dtype=np.uint8)
    for scale in (0.25, 0.5, 2, 3):
        out = imresize(flat, scale)
        assert out.shape == (math.ceil(10 * scale), math.ceil(12 * scale), 3)
        assert np.all(out == 77)
    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(imresize(img, 1), img)


def test_uint8_rounds_half_away_from_zero_like_matlab() -> None:
    # x2 along a 2-pixel row: the first output is (137 * p1 - 9 * p2) / 128 exactly (weights
    # -3/128, 29/128, 111/128 on the clamped first pixel, -9/128 on the second): 104.5 for 100, 36.
    row = np.array([[100, 36]], dtype=np.uint8)
    assert imresize(row.astype(np.float64), (1, 2))[0, 0] == 104.5
    assert imresize(row, (1, 2))[0, 0] == 105  # np.rint would give 104
    # Saturation: overshoot beyond 255 and below 0 clamps.
    edge = np.array([[255, 255, 0, 0]], dtype=np.uint8)
    up = imresize(edge, (1, 4))
    assert up.max() == 255 and up.min() == 0
    assert imresize(edge.astype(np.float64), (1, 4)).max() > 255


def test_smaller_scale_dimension_is_resized_first_with_rounding_between() -> None:
    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    cols_first = imresize(imresize(img, (1, 0.25)), (0.5, 1))
    np.testing.assert_array_equal(imresize(img, (0.5, 0.25)), cols_first)


def test_boundary_modes_clamp_or_mirror_taps() -> None:
    _, replicate = contributions(4, 8, 2.0)
    _, mirror = contributions(4, 8, 2.0, boundary="symmetric")
    # Output 1 samples u = 0.75: taps at 1-based -1, 0, 1, 2 (the outer two have zero weight).
    assert replicate[0].tolist() == [0, 0, 0, 1]
    assert mirror[0].tolist() == [1, 0, 0, 1]
    weights, _ = contributions(4, 8, 2.0)
    np.testing.assert_array_equal(weights[0] * 128, [-3, 29, 111, -9])
    down, _ = contributions(16, 4, 0.25)
    np.testing.assert_allclose(down.sum(axis=1), 1.0, rtol=0, atol=1e-15)


def test_argument_errors() -> None:
    img = np.zeros((4, 4), np.float64)
    with pytest.raises(ImageError, match=r"^imresize: give exactly one of scale and output_shape$"):
        imresize(img)
    with pytest.raises(ImageError, match=r"exactly one"):
        imresize(img, 2, (8, 8))
    with pytest.raises(ImageError, match=r"^imresize: expected a uint8, float32 or float64 array, got int64"):
        imresize(np.zeros((4, 4), np.int64), 2)
    with pytest.raises(ImageError, match=r"scale must be positive and finite, got -1"):
        imresize(img, -1)
    with pytest.raises(ImageError, match=r"boundary must be 'replicate' or 'symmetric', got 'wrap'"):
        imresize(img, 2, boundary="wrap")  # type: ignore[arg-type]
