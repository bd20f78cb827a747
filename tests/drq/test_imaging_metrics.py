"""Y conversion, PSNR-Y closed forms and SSIM-Y against a direct 2-D loop of Wang et al.'s definition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drq.errors import ImageError
from drq.imaging.metrics import gaussian_window_1d, psnr_y, rgb_to_y, ssim_y


def _gray(values: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(values, dtype=np.uint8)[:, :, None], 3, axis=2)


def test_gray_maps_to_bt601_studio_range() -> None:
    g = np.arange(256).reshape(16, 16)
    y = rgb_to_y(_gray(g))
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, 16 + 219 * g / 255.0, rtol=0, atol=1e-12)
    assert y.min() == pytest.approx(16) and y.max() == pytest.approx(235)
    np.testing.assert_array_equal(rgb_to_y(_gray(g), round_y=True), np.floor(16 + 219 * g / 255.0 + 0.5))


def test_colour_weights() -> None:
    img = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    mixed = 65.481 * 10 + 128.553 * 20 + 24.966 * 30
    expected = 16 + np.array([65.481 * 255, 128.553 * 255, 24.966 * 255, mixed]) / 255
    np.testing.assert_allclose(rgb_to_y(img)[0], expected, rtol=0, atol=1e-12)
    # 10, 20, 30: 16 + 3974.85 / 255 = 31.588, rounds to 32.
    assert rgb_to_y(img, round_y=True)[0, 3] == 32


def test_psnr_closed_form_and_crop() -> None:
    hr = _gray(np.full((12, 12), 100))
    sr = hr.copy()
    sr[2:10, 2:6] += 3  # 32 of the 64 pixels left after a 2-pixel crop differ by 3 gray levels
    d = 219 * 3 / 255.0
    expected = 10 * math.log10(255.0**2 / (32 / 64 * d * d))
    assert psnr_y(sr, hr, crop_border=2) == pytest.approx(expected, abs=1e-9)
    whole = 10 * math.log10(255.0**2 / (32 / 144 * d * d))
    assert psnr_y(sr, hr, crop_border=0) == pytest.approx(whole, abs=1e-9)
    border_only = hr.copy()
    border_only[0, :] = 0
    border_only[:, -1] = 255
    assert psnr_y(border_only, hr, crop_border=1) == math.inf
    assert psnr_y(border_only, hr, crop_border=0) < 30


def test_ssim_of_identical_images_is_one() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 25, 3), dtype=np.uint8)
    assert ssim_y(img, img, crop_border=4) == pytest.approx(1.0, abs=1e-12)


def _ssim_loop(y1: np.ndarray, y2: np.ndarray) -> float:
    """ssim_index.m written out: 2-D fspecial Gaussian, per-window statistics, mean of the map."""
    r = np.arange(11) - 5.0
    window = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2))
    window /= window.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(y1.shape[0] - 10):
        for j in range(y1.shape[1] - 10):
            a, b = y1[i : i + 11, j : j + 11], y2[i : i + 11, j : j + 11]
            mu_a, mu_b = (window * a).sum(), (window * b).sum()
            var_a = (window * a * a).sum() - mu_a**2
            var_b = (window * b * b).sum() - mu_b**2
            cov = (window * a * b).sum() - mu_a * mu_b
            values.append(
                ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
            )
    return float(np.mean(values))


@pytest.mark.parametrize("round_y", [False, True])
def test_ssim_matches_direct_loop(round_y: bool) -> None:
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (24, 21, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, hr.shape)
    sr = np.clip(hr.astype(int) + noise, 0, 255).astype(np.uint8)
    ours = ssim_y(sr, hr, crop_border=2, round_y=round_y)
    y_sr = rgb_to_y(sr, round_y)[2:-2, 2:-2]
    y_hr = rgb_to_y(hr, round_y)[2:-2, 2:-2]
    expected = _ssim_loop(y_sr, y_hr)
    assert abs(ours - expected) < 1e-10
    assert 0.2 < ours < 0.99  # a genuinely partial similarity, not a degenerate case


def test_gaussian_window_is_normalised_and_symmetric() -> None:
    g = gaussian_window_1d()
    assert len(g) == 11 and g.sum() == pytest.approx(1.0, abs=1e-15)
    np.testing.assert_array_equal(g, g[::-1])
    assert g[5] / g[4] == pytest.approx(math.exp(1 / (2 * 1.5**2)))


def test_shape_and_size_errors() -> None:
    a = np.zeros((20, 20, 3), np.uint8)
    b = np.zeros((20, 22, 3), np.uint8)
    shapes = r"SR shape \(20, 20, 3\) does not match HR shape \(20, 22, 3\)$"
    with pytest.raises(ImageError, match=r"^psnr_y: " + shapes):
        psnr_y(a, b, 2)
    with pytest.raises(ImageError, match=r"^ssim_y: SR shape \(20, 20, 3\) does not match HR shape"):
        ssim_y(a, b, 2)
    with pytest.raises(ImageError, match=r"^ssim_y: image 20x20 is too small for crop_border 5"):
        ssim_y(a, a, 5)
    with pytest.raises(ImageError, match=r"^rgb_to_y: expected a uint8 H x W x 3 array, got float64"):
        rgb_to_y(a.astype(np.float64))


@pytest.mark.parametrize("round_y", [False, True])
def test_banded_metrics_equal_the_whole_image_bit_for_bit(monkeypatch, round_y: bool) -> None:
    # Bands of 7 rows on a 45-row image: many bands, a short last one, bands shorter than the window.
    from drq.imaging import metrics

    rng = np.random.default_rng(5)
    hr = rng.integers(0, 256, (45, 23, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(np.int16) + rng.integers(-9, 10, hr.shape), 0, 255).astype(np.uint8)

    def whole_y(img: np.ndarray) -> np.ndarray:
        y = img.astype(np.float64) @ np.array([65.481, 128.553, 24.966]) / 255.0 + 16.0
        return np.floor(y + 0.5) if round_y else y

    y_sr, y_hr = whole_y(sr)[3:-3, 3:-3], whole_y(hr)[3:-3, 3:-3]
    whole_ssim = float(np.mean(metrics.ssim_map(y_sr, y_hr)))
    whole_psnr = 10.0 * math.log10(255.0**2 / float(np.mean((y_sr - y_hr) ** 2)))
    monkeypatch.setattr(metrics, "BAND_ROWS", 7)
    np.testing.assert_array_equal(rgb_to_y(sr, round_y), whole_y(sr))
    assert ssim_y(sr, hr, crop_border=3, round_y=round_y) == whole_ssim
    assert psnr_y(sr, hr, crop_border=3, round_y=round_y) == whole_psnr
