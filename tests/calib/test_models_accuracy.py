"""FP32 accuracy of the official checkpoints: Set5 PSNR-Y against the published numbers.

Published numbers are shared/README.md's (measured with the same sr_bench LR images): Y unrounded
(BT.601 on 0-255 RGB, kept as float), SR rounded to uint8, `scale` border. x3 has no benchmark folder,
so the x3 checkpoints are checked on a Set5 crop downscaled here with MATLAB bicubic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from calib.models import get_arch, load_pretrained
from drq.imaging.bicubic import imresize
from drq.imaging.datasets import open_dataset
from drq.imaging.io import from_nchw_float, read_image, to_nchw_float
from drq.imaging.metrics import psnr_y

slow = pytest.mark.slow

# (arch, scale, expected Set5 PSNR-Y, tolerance). pan x2 is PAN's paper number (38.00); carn_m x2 has no
# published number for this multiscale checkpoint and data (the paper reports 37.53 with its own
# pipeline), so it is pinned to the value measured here (results/zoo_fp32.md) as a regression check.
SET5 = [
    ("imdn", 4, 32.21, 0.02),
    ("carn_m", 4, 31.88, 0.05),
    ("rfdn", 4, 32.16, 0.05),
    ("rlfn", 4, 32.10, 0.05),
    pytest.param("pan", 4, 32.13, 0.02, marks=slow),
    pytest.param("imdn_ntire", 4, 32.25, 0.05, marks=slow),
    pytest.param("imdn", 2, 38.00, 0.02, marks=slow),
    pytest.param("pan", 2, 38.00, 0.02, marks=slow),
    pytest.param("carn_m", 2, 37.68, 0.02, marks=slow),
]

# x3 on Set5 img_003 (butterfly) HR[32:224, 32:224] -> 64 x 64 LR: measured PSNR-Y; bicubic gives 24.58.
X3_CROP = [("imdn", 31.51), ("pan", 31.96), ("carn_m", 31.47)]


def _upscale(model: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return from_nchw_float(model(torch.from_numpy(to_nchw_float(lr))).numpy())


def _weights(shared_dir: Path, arch: str, scale: int) -> Path:
    name = get_arch(arch).checkpoint_file(scale)
    assert name is not None
    path = shared_dir / "sr_weights" / name
    if not path.is_file():
        pytest.skip(f"needs {path}")
    return path


@pytest.mark.parametrize("arch, scale, expected, tol", SET5)
def test_set5_psnr_matches_published(shared_dir, arch, scale, expected, tol):
    torch.set_num_threads(2)
    loaded = load_pretrained(arch, scale, _weights(shared_dir, arch, scale))
    dataset = open_dataset(shared_dir / "sr_bench" / "Set5" / f"x{scale}", scale)
    unrounded, rounded = [], []
    for pair in dataset:
        sr = _upscale(loaded.model, pair.lr)
        unrounded.append(psnr_y(sr, pair.hr, scale))
        rounded.append(psnr_y(sr, pair.hr, scale, round_y=True))
    assert len(unrounded) == 5
    assert abs(np.mean(unrounded) - expected) <= tol, f"{arch} x{scale}: {np.mean(unrounded):.4f} dB"
    if (arch, scale) == ("imdn", 4):
        # The published numbers use unrounded Y: MATLAB-style integer Y is 0.02 dB lower here.
        assert np.mean(unrounded) - np.mean(rounded) > 0.01


@pytest.mark.parametrize("arch, expected", X3_CROP)
def test_x3_checkpoints_load_strictly_and_upscale_by_3(shared_dir, arch, expected):
    torch.set_num_threads(2)
    loaded = load_pretrained(arch, 3, _weights(shared_dir, arch, 3))
    hr = read_image(shared_dir / "sr_bench" / "Set5" / "x4" / "HR" / "img_003.png")[32:224, 32:224]
    lr = imresize(hr, 1 / 3)
    sr = _upscale(loaded.model, lr)
    assert lr.shape == (64, 64, 3) and sr.shape == hr.shape
    psnr = psnr_y(sr, hr, 3)
    bicubic = psnr_y(imresize(lr, 3), hr, 3)
    assert psnr > bicubic + 6.0  # x2 weights run at x3 (a wrong-scale load) reach only ~bicubic + 5.4
    assert abs(psnr - expected) <= 0.05
