"""The torch-free evaluation loop: scores equal the metric functions, errors name the image."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drq.errors import ImageError
from drq.imaging.bicubic import imresize
from drq.imaging.datasets import open_dataset
from drq.imaging.evaluate import DatasetResult, evaluate_dataset
from drq.imaging.io import from_nchw_float, read_image
from drq.imaging.metrics import psnr_y, ssim_y
from drq.imaging.progress import Progress


def _bicubic_upscaler(scale: int):
    def upscale(lr: np.ndarray) -> np.ndarray:
        assert lr.dtype == np.float32 and lr.shape[:2] == (1, 3)
        hwc = lr[0].transpose(1, 2, 0).astype(np.float64)
        return imresize(hwc, scale).transpose(2, 0, 1)[None].astype(np.float32)

    return upscale


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "Tiny"
    root.mkdir()
    for i, (h, w) in enumerate([(32, 36), (40, 30)]):
        # Smooth content so bicubic does reasonably well and the scores are not degenerate.
        y, x = np.mgrid[0:h, 0:w]
        base = 128 + 60 * np.sin(x / 5.0 + i) * np.cos(y / 7.0)
        img = np.clip(base[:, :, None] + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(root / f"im{i}.png")
    return root


def test_scores_are_the_metric_functions_means(folder: Path) -> None:
    dataset = open_dataset(folder, 2)
    upscale = _bicubic_upscaler(2)
    result = evaluate_dataset(upscale, dataset, 2)
    assert isinstance(result, DatasetResult) and result.name == "Tiny" and result.images == 2
    expected = []
    for pair in dataset:
        sr = from_nchw_float(upscale(pair.lr[None].transpose(0, 3, 1, 2).astype(np.float32) / 255))
        expected.append((pair.name, psnr_y(sr, pair.hr, 2), ssim_y(sr, pair.hr, 2)))
    assert result.per_image == tuple(expected)
    assert result.psnr == pytest.approx((expected[0][1] + expected[1][1]) / 2, abs=1e-12)
    assert result.ssim == pytest.approx((expected[0][2] + expected[1][2]) / 2, abs=1e-12)
    assert 20 < result.psnr < 60 and 0.3 < result.ssim < 1
    assert result.seconds > 0
    data = json.loads(json.dumps(result.to_dict()))
    assert data["per_image"][1] == {"name": "im1.png", "psnr": expected[1][1], "ssim": expected[1][2]}
    assert {k: data[k] for k in ("name", "images", "psnr", "ssim")} == {
        "name": "Tiny",
        "images": 2,
        "psnr": result.psnr,
        "ssim": result.ssim,
    }


def test_perfect_output_scores_inf_and_one(folder: Path) -> None:
    dataset = open_dataset(folder, 2)
    by_shape = {pair.lr.shape: pair.hr for pair in dataset}

    def oracle(lr: np.ndarray) -> np.ndarray:
        hr = by_shape[(lr.shape[2], lr.shape[3], 3)]
        return hr.transpose(2, 0, 1)[None].astype(np.float32) / 255

    result = evaluate_dataset(oracle, dataset, 2)
    assert result.psnr == math.inf and result.ssim == pytest.approx(1.0, abs=1e-12)


def test_wrong_output_shape_names_image_and_shapes(folder: Path) -> None:
    dataset = open_dataset(folder, 2)
    with pytest.raises(ImageError) as info:
        evaluate_dataset(_bicubic_upscaler(3), dataset, 2)
    assert str(info.value) == (
        "Tiny/im0.png: SR output shape (1, 3, 48, 54) does not match HR (1, 3, 32, 36) (LR (16, 18) x2)"
    )


def test_nan_output_and_scale_mismatch(folder: Path) -> None:
    dataset = open_dataset(folder, 2)

    def nan(lr: np.ndarray) -> np.ndarray:
        out = _bicubic_upscaler(2)(lr)
        out[0, 0, 0, 0] = np.nan
        return out

    with pytest.raises(ImageError, match=r"^Tiny/im0\.png: SR output: 1 NaN values$"):
        evaluate_dataset(nan, dataset, 2)
    with pytest.raises(ImageError, match=r"^Tiny: dataset opened for x2, evaluated at x4$"):
        evaluate_dataset(_bicubic_upscaler(4), dataset, 4)


def test_progress_is_advanced_with_running_means(folder: Path) -> None:
    stream = io.StringIO()
    progress = Progress(2, "Tiny", stream=stream)
    result = evaluate_dataset(_bicubic_upscaler(2), open_dataset(folder, 2), 2, progress)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert progress.count == 2 and len(lines) == 2
    assert lines[-1].startswith("Tiny [####################] 2/2 100%")
    assert lines[-1].endswith(f"psnr={result.psnr:.4f} ssim={result.ssim:.4f}")


def test_set5_x4_bicubic_matches_the_published_baseline(set5_x4: Path) -> None:
    # Bicubic upsampling of the Set5 x4 LR scores 28.42 dB / 0.8104 in the SR literature.
    dataset = open_dataset(set5_x4, 4)
    result = evaluate_dataset(_bicubic_upscaler(4), dataset, 4)
    assert result.images == 5
    assert result.psnr == pytest.approx(28.42, abs=0.05)
    assert result.ssim == pytest.approx(0.8104, abs=0.002)
    assert read_image(dataset.hr_paths[0]).shape == (512, 512, 3)
