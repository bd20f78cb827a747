"""SR dataset folders (HR/LR pairs) and calibration crops, read lazily as uint8 RGB.

Two layouts are accepted by `open_dataset`:

- A folder holding ``HR/`` (and optionally ``LR/``) with the same file names, like
  ``sr_bench/<set>/x<S>/``. When ``LR/`` exists, every HR name must have an LR file of exactly
  ``(H / S, W / S)`` pixels (of the cropped HR, below); extra files in ``LR/`` are ignored.
- Any folder of HR images. LR images are then made with MATLAB bicubic ``imresize(hr, 1 / S)``.

Images are files ending in .png, .jpg, .jpeg, .bmp, .tif or .tiff (any case), not hidden, taken in
file-name order. HR images are cropped to a multiple of the scale by dropping the last rows and columns
(top-left anchored), as the benchmarks' ``modcrop`` does. The dataset's name is the folder's name, or
for a folder named ``x<S>`` its parent's (``sr_bench/Set5/x4`` -> ``Set5``).

The folder is listed (and every LR size checked from the file headers) when the dataset is opened, so a
bad folder fails before any inference; pixels are read one pair at a time during iteration.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from drq.errors import ImageError
from drq.imaging.bicubic import imresize
from drq.imaging.io import read_image, read_image_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True, eq=False)  # eq on arrays would be ambiguous; compare fields explicitly
class SRPair:
    """One evaluation sample: uint8 ``h x w x 3`` LR and ``(h * S) x (w * S) x 3`` HR, same name."""

    name: str
    lr: npt.NDArray[np.uint8]
    hr: npt.NDArray[np.uint8]


def list_images(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name (hidden files skipped).

    Raises:
        ImageError: `folder` is missing, not a folder, or holds no image.
    """
    if not folder.is_dir():
        raise ImageError(f"{folder}: no such folder")
    images = sorted(
        (
            p
            for p in folder.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )
    if not images:
        raise ImageError(f"{folder}: no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
    return images


def _cropped_hr_size(path: Path, width: int, height: int, scale: int) -> tuple[int, int]:
    cropped = (width - width % scale, height - height % scale)
    if min(cropped) == 0:
        raise ImageError(f"{path}: HR size {width}x{height} is smaller than the scale {scale}")
    return cropped


def _check_lr_size(lr_path: Path, lr_size: tuple[int, int], hr_size: tuple[int, int], scale: int) -> None:
    """`lr_size` and `hr_size` are (width, height); `hr_size` is the cropped HR."""
    if lr_size != (hr_size[0] // scale, hr_size[1] // scale):
        raise ImageError(
            f"{lr_path}: LR size {lr_size[0]}x{lr_size[1]} does not match "
            f"HR {hr_size[0]}x{hr_size[1]} / scale {scale}"
        )


def crop_to_scale(hr: npt.NDArray[np.uint8], scale: int) -> npt.NDArray[np.uint8]:
    """Drop the last rows and columns so both sizes are multiples of `scale` (``modcrop``)."""
    height, width = hr.shape[:2]
    return hr[: height - height % scale, : width - width % scale]


def dataset_name(folder: Path) -> str:
    """The folder's name, or its parent's for an ``x<S>`` folder (``sr_bench/Set5/x4`` -> ``Set5``)."""
    resolved = folder.resolve()
    if re.fullmatch(r"[xX]\d+", resolved.name) and resolved.parent.name:
        return resolved.parent.name
    return resolved.name


class SRDataset:
    """A lazily read SR dataset: iterate to get `SRPair`s in file-name order.

    Attributes:
        name: Dataset name (see `dataset_name`).
        root: The folder given to `open_dataset`.
        scale: Upscaling factor.
        hr_paths: HR image files, sorted by name.
        lr_paths: The matching LR files, or None when LR is made by bicubic downscaling.
    """

    def __init__(
        self, name: str, root: Path, scale: int, hr_paths: tuple[Path, ...], lr_paths: tuple[Path, ...] | None
    ) -> None:
        self.name = name
        self.root = root
        self.scale = scale
        self.hr_paths = hr_paths
        self.lr_paths = lr_paths

    def __len__(self) -> int:
        return len(self.hr_paths)

    @property
    def names(self) -> tuple[str, ...]:
        """The image names (HR file names), in iteration order."""
        return tuple(p.name for p in self.hr_paths)

    def __repr__(self) -> str:
        source = "LR/" if self.lr_paths is not None else "bicubic LR"
        return f"SRDataset({self.name!r}, {len(self)} images, x{self.scale}, {source}, root='{self.root}')"

    def load(self, index: int) -> SRPair:
        """Read pair `index`: the HR cropped to the scale, and its LR file or bicubic downscale.

        Raises:
            ImageError: An image cannot be read, or the LR size does not fit the HR.
        """
        hr_path = self.hr_paths[index]
        raw = read_image(hr_path)
        _cropped_hr_size(hr_path, raw.shape[1], raw.shape[0], self.scale)
        hr = np.ascontiguousarray(crop_to_scale(raw, self.scale))
        if self.lr_paths is None:
            lr = imresize(hr, 1 / self.scale)
        else:
            lr_path = self.lr_paths[index]
            lr = read_image(lr_path)
            _check_lr_size(lr_path, (lr.shape[1], lr.shape[0]), (hr.shape[1], hr.shape[0]), self.scale)
        return SRPair(hr_path.name, lr, hr)

    def __iter__(self) -> Iterator[SRPair]:
        for index in range(len(self.hr_paths)):
            yield self.load(index)


def open_dataset(path: str | os.PathLike[str], scale: int) -> SRDataset:
    """Open an SR dataset folder (layouts in the module docstring); pixels are read on iteration.

    Args:
        path: A folder with ``HR/`` (and optionally ``LR/``), or a folder of HR images.
        scale: Upscaling factor (>= 1).

    Raises:
        ImageError: Missing folder, no images, an HR name missing from ``LR/``, an unreadable header, an
            HR smaller than the scale, or an LR whose size is not the cropped HR's divided by the scale.
    """
    root = Path(path)
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ImageError(f"{root}: scale must be a positive integer, got {scale!r}")
    scale = int(scale)
    if not root.is_dir():
        raise ImageError(f"{root}: no such dataset folder")
    hr_dir = root / "HR"
    if hr_dir.is_dir():
        hr_paths = list_images(hr_dir)
        lr_dir = root / "LR"
        lr_paths: list[Path] | None = None
        if lr_dir.is_dir():
            lr_paths = [lr_dir / p.name for p in hr_paths]
            missing = [p.name for p in lr_paths if not p.is_file()]
            if missing:
                more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
                raise ImageError(f"{lr_dir}: no LR image for HR {missing[0]}{more}")
            for hr_path, lr_path in zip(hr_paths, lr_paths, strict=True):
                hr_size = _cropped_hr_size(hr_path, *read_image_size(hr_path), scale)
                _check_lr_size(lr_path, read_image_size(lr_path), hr_size, scale)
    else:
        hr_paths = list_images(root)
        lr_paths = None
        for hr_path in hr_paths:
            _cropped_hr_size(hr_path, *read_image_size(hr_path), scale)
    return SRDataset(
        dataset_name(root), root, scale, tuple(hr_paths), tuple(lr_paths) if lr_paths is not None else None
    )


def calib_crops(
    folder: str | os.PathLike[str], scale: int, crop: int, count: int, seed: int = 0
) -> list[npt.NDArray[np.float32]]:
    """Random LR crops for calibration: float32 ``3 x crop x crop`` arrays in [0, 1].

    Selection is deterministic for a given folder and seed: ``numpy.random.default_rng(seed)`` draws
    `count` distinct images from the folder's images in name order (`list_images`); the crops come in
    that drawn order. Each HR is cropped to a multiple of `scale`, downscaled with MATLAB bicubic
    ``imresize(hr, 1 / scale)`` to uint8, and one ``crop x crop`` window is taken at a position drawn
    from the same generator (top, then left, uniform over all valid positions).

    Args:
        folder: A folder of HR images (e.g. ``sr_calib/bsd200``).
        scale: Upscaling factor of the model to calibrate.
        crop: LR crop side in pixels.
        count: Number of images (one crop each).
        seed: Seed of the image choice and the crop positions.

    Raises:
        ImageError: Missing or empty folder, fewer than `count` images, bad arguments, an unreadable
            image, or an LR image smaller than `crop`.
    """
    root = Path(folder)
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ImageError(f"{root}: scale must be a positive integer, got {scale!r}")
    if crop < 1 or count < 1:
        raise ImageError(f"{root}: crop and count must be >= 1, got crop={crop}, count={count}")
    images = list_images(root)
    if count > len(images):
        raise ImageError(f"{root}: asked for {count} calibration images, found {len(images)}")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=count, replace=False)
    crops = []
    for index in chosen:
        path = images[int(index)]
        raw = read_image(path)
        _cropped_hr_size(path, raw.shape[1], raw.shape[0], scale)
        lr = imresize(np.ascontiguousarray(crop_to_scale(raw, scale)), 1 / scale)
        height, width = lr.shape[:2]
        if height < crop or width < crop:
            raise ImageError(f"{path}: LR size {width}x{height} is smaller than the crop {crop}x{crop}")
        top = int(rng.integers(0, height - crop + 1))
        left = int(rng.integers(0, width - crop + 1))
        patch = lr[top : top + crop, left : left + crop]
        crops.append(np.ascontiguousarray(patch.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)))
    return crops
