"""PSNR and SSIM on the luma (Y) channel, computed the way SR papers report them.

- Y is BT.601 studio-range luma from 8-bit RGB: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``
  (R, G, B in 0..255, so Y lies in 16..235). It is kept as float64 by default (as the common Python
  evaluation scripts do); ``round_y=True`` rounds it to the nearest integer like MATLAB's
  ``rgb2ycbcr`` on uint8 input.
- ``crop_border`` pixels are removed on every side before measuring (the scale, by convention).
- PSNR: ``10 log10(255^2 / MSE)``; identical images give ``inf``.
- SSIM: Wang et al.'s reference ``ssim_index.m``: an 11 x 11 Gaussian window (sigma 1.5) normalised to
  sum 1, ``K1 = 0.01``, ``K2 = 0.03``, ``L = 255``, 'valid' filtering (no padding), and the mean of the
  SSIM map. The 2-D window is the outer product of the normalised 1-D one, so the filtering runs as two
  1-D passes in float64.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from drq.errors import ImageError

_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
DATA_RANGE = 255.0
BAND_ROWS = 256
"""Rows per band of the Y conversion and of the SSIM map: a few MB of temporaries per band, where the
whole 16 M-pixel image (the pixel limit) needed about 1.8 GB of float64 planes."""


def rgb_to_y(img: npt.NDArray[np.uint8], round_y: bool = False) -> npt.NDArray[np.float64]:
    """BT.601 luma of a uint8 ``H x W x 3`` RGB image, in 16..235, as float64.

    Args:
        img: The RGB image.
        round_y: Round to the nearest integer (halves up), as MATLAB's ``rgb2ycbcr`` does for uint8.

    Raises:
        ImageError: `img` is not a uint8 ``H x W x 3`` array.
    """
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        described = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ImageError(f"rgb_to_y: expected a uint8 H x W x 3 array, got {described}")
    y = np.empty(img.shape[:2], dtype=np.float64)
    # In bands of rows: the float64 copy of a whole 16 M-pixel RGB image alone would be 384 MB. Each row
    # is computed exactly as for the whole image, so the bands change no bit.
    for r0 in range(0, img.shape[0], BAND_ROWS):
        band = y[r0 : r0 + BAND_ROWS]
        np.add(img[r0 : r0 + BAND_ROWS].astype(np.float64) @ _Y_WEIGHTS / 255.0, 16.0, out=band)
        if round_y:
            # Y >= 16, so floor(y + 0.5) is MATLAB's round-half-away-from-zero.
            np.floor(band + 0.5, out=band)
    return y


def _cropped_y_pair(
    sr: np.ndarray, hr: np.ndarray, crop_border: int, round_y: bool, min_size: int, what: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Both images' Y channels with `crop_border` removed, checking shapes and the size left."""
    if np.shape(sr) != np.shape(hr):
        raise ImageError(f"{what}: SR shape {np.shape(sr)} does not match HR shape {np.shape(hr)}")
    if crop_border < 0:
        raise ImageError(f"{what}: crop_border must be >= 0, got {crop_border}")
    y_sr = rgb_to_y(sr, round_y)
    y_hr = rgb_to_y(hr, round_y)
    height, width = y_sr.shape
    if min(height, width) - 2 * crop_border < min_size:
        raise ImageError(
            f"{what}: image {width}x{height} is too small for crop_border {crop_border} "
            f"(need at least {min_size} pixels left per side)"
        )
    if crop_border:
        inner = (slice(crop_border, -crop_border), slice(crop_border, -crop_border))
        y_sr, y_hr = y_sr[inner], y_hr[inner]
    return y_sr, y_hr


def psnr_y(
    sr: npt.NDArray[np.uint8], hr: npt.NDArray[np.uint8], crop_border: int, *, round_y: bool = False
) -> float:
    """PSNR in dB on the Y channel after removing `crop_border` pixels per side (``inf`` if equal).

    Args:
        sr: Super-resolved uint8 ``H x W x 3`` RGB image.
        hr: Ground truth, same shape.
        crop_border: Pixels removed on every side (the scale, by convention).
        round_y: Round Y to integers first (MATLAB's uint8 ``rgb2ycbcr``).

    Raises:
        ImageError: Shapes differ, inputs are not uint8 RGB, or nothing is left after cropping.
    """
    y_sr, y_hr = _cropped_y_pair(sr, hr, crop_border, round_y, 1, "psnr_y")
    diff = y_sr - y_hr
    mse = float(np.mean(np.multiply(diff, diff, out=diff)))  # one temporary plane, the same bits as ** 2
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(DATA_RANGE**2 / mse)


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> npt.NDArray[np.float64]:
    """The normalised 1-D Gaussian whose outer product with itself is MATLAB's ``fspecial('gaussian')``."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(img: npt.NDArray[np.float64], g: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """'valid' correlation with the separable window ``outer(g, g)``: rows, then columns."""
    k = len(g)
    rows = img.shape[0] - k + 1
    cols = img.shape[1] - k + 1
    tmp = np.zeros((rows, img.shape[1]), dtype=np.float64)
    for i, w in enumerate(g):
        tmp += w * img[i : i + rows]
    out = np.zeros((rows, cols), dtype=np.float64)
    for j, w in enumerate(g):
        out += w * tmp[:, j : j + cols]
    return out


def ssim_map(y1: npt.NDArray[np.float64], y2: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """The SSIM map of two float64 single-channel images on 0..255 ('valid' size: ``H - 10 x W - 10``)."""
    g = gaussian_window_1d()
    c1 = (SSIM_K1 * DATA_RANGE) ** 2
    c2 = (SSIM_K2 * DATA_RANGE) ** 2
    mu1 = _filter_valid(y1, g)
    mu2 = _filter_valid(y2, g)
    mu1_sq = mu1 * mu1
    mu2_sq = mu2 * mu2
    mu1_mu2 = mu1 * mu2
    sigma1_sq = _filter_valid(y1 * y1, g) - mu1_sq
    sigma2_sq = _filter_valid(y2 * y2, g) - mu2_sq
    sigma12 = _filter_valid(y1 * y2, g) - mu1_mu2
    return ((2 * mu1_mu2 + c1) * (2 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))


def ssim_y(
    sr: npt.NDArray[np.uint8], hr: npt.NDArray[np.uint8], crop_border: int, *, round_y: bool = False
) -> float:
    """Mean SSIM on the Y channel after removing `crop_border` pixels per side (module docstring).

    Args:
        sr: Super-resolved uint8 ``H x W x 3`` RGB image.
        hr: Ground truth, same shape.
        crop_border: Pixels removed on every side (the scale, by convention).
        round_y: Round Y to integers first (MATLAB's uint8 ``rgb2ycbcr``).

    Raises:
        ImageError: Shapes differ, inputs are not uint8 RGB, or fewer than 11 x 11 pixels remain.
    """
    y_sr, y_hr = _cropped_y_pair(sr, hr, crop_border, round_y, SSIM_WINDOW, "ssim_y")
    return float(np.mean(banded_ssim_map(y_sr, y_hr)))


def banded_ssim_map(y1: npt.NDArray[np.float64], y2: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """`ssim_map`, computed `BAND_ROWS` map rows at a time: every value is computed exactly as on the
    whole image (the filters read the same pixels in the same order), with one band's temporaries."""
    rows = y1.shape[0] - SSIM_WINDOW + 1
    out = np.empty((rows, y1.shape[1] - SSIM_WINDOW + 1), dtype=np.float64)
    for r0 in range(0, rows, BAND_ROWS):
        r1 = min(rows, r0 + BAND_ROWS)
        out[r0:r1] = ssim_map(y1[r0 : r1 + SSIM_WINDOW - 1], y2[r0 : r1 + SSIM_WINDOW - 1])
    return out
