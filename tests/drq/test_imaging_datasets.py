"""Dataset folders (HR/LR pairs or HR only), their user errors, and calibration crops."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drq.errors import ImageError
from drq.imaging.bicubic import imresize
from drq.imaging.datasets import SRPair, calib_crops, open_dataset


def _save(path: Path, pixels: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def _random(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _bench(tmp_path: Path, sizes: dict[str, tuple[int, int]], scale: int = 2) -> Path:
    """A Set-like layout <tmp>/MySet/x<scale>/{HR,LR} with bicubic LR of the cropped HR."""
    rng = np.random.default_rng(0)
    root = tmp_path / "MySet" / f"x{scale}"
    for name, (height, width) in sizes.items():
        hr = _save(root / "HR" / name, _random(rng, height, width))
        _save(root / "LR" / name, imresize(hr[: height - height % scale, : width - width % scale], 1 / scale))
    return root


def test_bench_layout_pairs_in_name_order(tmp_path: Path) -> None:
    root = _bench(tmp_path, {"b.png": (20, 16), "a.png": (12, 18)})
    dataset = open_dataset(root, 2)
    assert dataset.name == "MySet" and len(dataset) == 2 and dataset.names == ("a.png", "b.png")
    pairs = list(dataset)
    assert [p.name for p in pairs] == ["a.png", "b.png"]
    first = pairs[0]
    assert isinstance(first, SRPair) and first.hr.shape == (12, 18, 3) and first.lr.shape == (6, 9, 3)
    np.testing.assert_array_equal(first.hr, np.asarray(Image.open(root / "HR" / "a.png")))
    np.testing.assert_array_equal(first.lr, np.asarray(Image.open(root / "LR" / "a.png")))


def test_hr_is_cropped_top_left_to_a_multiple_of_the_scale(tmp_path: Path) -> None:
    root = _bench(tmp_path, {"odd.png": (13, 10)}, scale=4)  # cropped HR 12x8 (h x w), LR 3x2
    pair = next(iter(open_dataset(root, 4)))
    full = np.asarray(Image.open(root / "HR" / "odd.png"))
    np.testing.assert_array_equal(pair.hr, full[:12, :8])
    assert pair.lr.shape == (3, 2, 3)


def test_lr_size_mismatch_names_the_lr_file(tmp_path: Path) -> None:
    root = _bench(tmp_path, {"a.png": (13, 10)}, scale=4)
    _save(root / "LR" / "a.png", np.zeros((4, 3, 3), np.uint8))  # 3x4 (WxH), should be 2x3
    with pytest.raises(ImageError) as info:
        open_dataset(root, 4)
    assert str(info.value) == f"{root / 'LR' / 'a.png'}: LR size 3x4 does not match HR 8x12 / scale 4"


def test_unreadable_lr_fails_at_open(tmp_path: Path) -> None:
    root = _bench(tmp_path, {"a.png": (8, 8)})
    (root / "LR" / "a.png").write_bytes(b"garbage")
    with pytest.raises(ImageError, match=rf"^{root / 'LR' / 'a.png'}: cannot read image \("):
        open_dataset(root, 2)


def test_lr_missing_for_an_hr_name(tmp_path: Path) -> None:
    root = _bench(tmp_path, {"a.png": (8, 8), "b.png": (8, 8), "c.png": (8, 8)})
    (root / "LR" / "b.png").unlink()
    with pytest.raises(ImageError, match=rf"^{root / 'LR'}: no LR image for HR b\.png$"):
        open_dataset(root, 2)
    (root / "LR" / "c.png").unlink()
    with pytest.raises(ImageError, match=r"no LR image for HR b\.png and 1 more$"):
        open_dataset(root, 2)


def test_hr_only_folder_makes_bicubic_lr(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    folder = tmp_path / "photos"
    hr = _save(folder / "Z.PNG", _random(rng, 17, 22))
    _save(folder / "a.bmp", _random(rng, 8, 8))
    (folder / "notes.txt").write_text("not an image")
    _save(folder / ".hidden.png", _random(rng, 8, 8))
    dataset = open_dataset(folder, 3)
    assert dataset.name == "photos" and dataset.names == ("Z.PNG", "a.bmp") and dataset.lr_paths is None
    pair = list(dataset)[0]
    np.testing.assert_array_equal(pair.hr, hr[:15, :21])
    np.testing.assert_array_equal(pair.lr, imresize(np.ascontiguousarray(hr[:15, :21]), 1 / 3))
    assert pair.lr.shape == (5, 7, 3)


def test_hr_folder_without_lr_folder_also_uses_bicubic(tmp_path: Path) -> None:
    root = _bench(tmp_path, {"a.png": (8, 12)})
    for lr in (root / "LR").iterdir():
        lr.unlink()
    (root / "LR").rmdir()
    pair = next(iter(open_dataset(root, 2)))
    np.testing.assert_array_equal(pair.lr, imresize(pair.hr, 0.5))


def test_images_are_read_during_iteration(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    folder = tmp_path / "lazy"
    _save(folder / "a.png", _random(rng, 8, 8))
    dataset = open_dataset(folder, 2)
    replaced = _save(folder / "a.png", _random(rng, 8, 8))
    np.testing.assert_array_equal(next(iter(dataset)).hr, replaced)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=rf"^{tmp_path / 'nope'}: no such dataset folder$"):
        open_dataset(tmp_path / "nope", 4)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ImageError, match=rf"^{empty}: no images \(png, jpg, jpeg, bmp, tif, tiff\)$"):
        open_dataset(empty, 4)
    (empty / "HR").mkdir()
    with pytest.raises(ImageError, match=rf"^{empty / 'HR'}: no images"):
        open_dataset(empty, 4)
    _save(tmp_path / "tiny" / "t.png", np.zeros((3, 9, 3), np.uint8))
    with pytest.raises(ImageError, match=r"t\.png: HR size 9x3 is smaller than the scale 4$"):
        open_dataset(tmp_path / "tiny", 4)
    with pytest.raises(ImageError, match=r"scale must be a positive integer, got 0"):
        open_dataset(tmp_path / "tiny", 0)


def test_set5_x4_opens_with_the_set_name(set5_x4: Path) -> None:
    dataset = open_dataset(set5_x4, 4)
    assert dataset.name == "Set5" and len(dataset) == 5
    pair = next(iter(dataset))
    assert pair.name == "img_001.png" and pair.hr.shape == (512, 512, 3) and pair.lr.shape == (128, 128, 3)


def _is_window(lr: np.ndarray, patch: np.ndarray) -> bool:
    size = patch.shape[0]
    for top in range(lr.shape[0] - size + 1):
        for left in range(lr.shape[1] - size + 1):
            if np.array_equal(lr[top : top + size, left : left + size], patch):
                return True
    return False


def test_calib_crops_are_seeded_windows_of_the_bicubic_lr(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    folder = tmp_path / "pool"
    hrs = {f"{i}.png": _save(folder / f"{i}.png", _random(rng, 26 + i, 30)) for i in range(4)}
    crops = calib_crops(folder, 2, 8, 3, seed=5)
    assert len(crops) == 3
    assert all(c.dtype == np.float32 and c.shape == (3, 8, 8) for c in crops)
    assert all(0 <= c.min() and c.max() <= 1 for c in crops)
    again = calib_crops(folder, 2, 8, 3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(crops, again, strict=True))
    other = calib_crops(folder, 2, 8, 3, seed=6)
    assert not all(np.array_equal(a, b) for a, b in zip(crops, other, strict=True))
    lrs = [imresize(np.ascontiguousarray(hr[: hr.shape[0] // 2 * 2]), 0.5) for hr in hrs.values()]
    for crop in crops:
        patch = np.rint(crop.transpose(1, 2, 0) * 255).astype(np.uint8)
        assert sum(_is_window(lr, patch) for lr in lrs) == 1


def test_calib_crops_errors(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    folder = tmp_path / "pool"
    _save(folder / "a.png", _random(rng, 40, 30))
    with pytest.raises(ImageError, match=rf"^{folder}: asked for 2 calibration images, found 1$"):
        calib_crops(folder, 2, 8, 2)
    with pytest.raises(ImageError, match=r"a\.png: LR size 15x20 is smaller than the crop 16x16$"):
        calib_crops(folder, 2, 16, 1)
    with pytest.raises(ImageError, match=r"no such folder"):
        calib_crops(tmp_path / "missing", 2, 8, 1)
