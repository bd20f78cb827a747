"""Torch-free SR evaluation loop: PSNR-Y and SSIM-Y over a dataset, as SR papers report them.

For every pair the LR image goes to the model as float32 ``1 x 3 x h x w`` in [0, 1]; the output must
be ``1 x 3 x (h * S) x (w * S)`` (the cropped HR's size); it is clamped to [0, 1], scaled by 255 and
rounded half to even to uint8 (`from_nchw_float`), then compared with the HR on the Y channel with
``crop_border = S``. The dataset scores are plain means over its images.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from drq.errors import ImageError
from drq.imaging.datasets import SRDataset
from drq.imaging.io import from_nchw_float, to_nchw_float
from drq.imaging.metrics import psnr_y, ssim_y
from drq.imaging.progress import Progress

Upscale = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class DatasetResult:
    """Scores of one dataset.

    Attributes:
        name: Dataset name.
        images: Number of images evaluated.
        psnr: Mean PSNR-Y in dB (``inf`` if some SR output equals its HR exactly).
        ssim: Mean SSIM-Y.
        seconds: Wall-clock time of the whole loop (reading, inference, metrics).
        per_image: ``(name, psnr, ssim)`` of each image, in dataset order.
    """

    name: str
    images: int
    psnr: float
    ssim: float
    seconds: float
    per_image: tuple[tuple[str, float, float], ...]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `per_image` becomes a list of ``{"name", "psnr", "ssim"}``."""
        return {
            "name": self.name,
            "images": self.images,
            "psnr": self.psnr,
            "ssim": self.ssim,
            "seconds": self.seconds,
            "per_image": [{"name": n, "psnr": p, "ssim": s} for n, p, s in self.per_image],
        }


def evaluate_dataset(
    upscale: Upscale, dataset: SRDataset, scale: int, progress: Progress | None = None
) -> DatasetResult:
    """Run `upscale` on every LR image of `dataset` and score the outputs against the HR images.

    Args:
        upscale: Model as a function: float32 ``1 x 3 x h x w`` in [0, 1] to
            ``1 x 3 x (h * scale) x (w * scale)``, or to the uint8 ``(h * scale) x (w * scale) x 3`` SR
            image itself (a tiled upscaler converts tile by tile).
        dataset: Pairs to evaluate (`open_dataset`).
        scale: Upscaling factor; also the border cropped before measuring.
        progress: Advanced once per image with the running mean PSNR/SSIM; the caller closes it.

    Returns:
        The mean and per-image scores.

    Raises:
        ImageError: `scale` differs from the dataset's, an output has the wrong shape or holds NaN, or
            an image cannot be read.
    """
    dataset_scale = getattr(dataset, "scale", scale)
    if dataset_scale != scale:
        raise ImageError(f"{dataset.name}: dataset opened for x{dataset_scale}, evaluated at x{scale}")
    started = time.perf_counter()
    scores: list[tuple[str, float, float]] = []
    for pair in dataset:
        output = np.asarray(upscale(to_nchw_float(pair.lr)))
        # A tiled upscaler (serve.tiling) returns the uint8 H x W x 3 image itself.
        ready = output.dtype == np.uint8 and output.ndim == 3
        expected = pair.hr.shape if ready else (1, 3, pair.hr.shape[0], pair.hr.shape[1])
        if output.shape != expected:
            raise ImageError(
                f"{dataset.name}/{pair.name}: SR output shape {tuple(output.shape)} does not match "
                f"HR {expected} (LR {tuple(pair.lr.shape[:2])} x{scale})"
            )
        try:
            sr = output if ready else from_nchw_float(output)
            scores.append((pair.name, psnr_y(sr, pair.hr, scale), ssim_y(sr, pair.hr, scale)))
        except ImageError as err:  # NaN output, image too small to crop: name the image
            raise ImageError(f"{dataset.name}/{pair.name}: {err}") from err
        if progress is not None:
            progress.update(
                1, psnr=float(np.mean([s[1] for s in scores])), ssim=float(np.mean([s[2] for s in scores]))
            )
    if not scores:
        raise ImageError(f"{dataset.name}: no images to evaluate")
    return DatasetResult(
        name=dataset.name,
        images=len(scores),
        psnr=float(np.mean([s[1] for s in scores])),
        ssim=float(np.mean([s[2] for s in scores])),
        seconds=time.perf_counter() - started,
        per_image=tuple(scores),
    )
