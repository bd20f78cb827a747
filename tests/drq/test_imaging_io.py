"""Image reading rules (one test per documented mode), atomic PNG writing and NCHW conversions."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from drq.errors import ImageError
from drq.imaging.io import from_nchw_float, read_image, read_image_size, to_nchw_float, write_image


def _png_16bit_rgb(path: Path, pixels: np.ndarray) -> None:
    """Write a 16-bit RGB PNG by hand (Pillow cannot write one)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = pixels.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_rgb_is_read_as_stored(tmp_path: Path) -> None:
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7
    Image.fromarray(pixels, mode="RGB").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3) and out.flags.writeable
    np.testing.assert_array_equal(out, pixels)


def test_gray_is_replicated_to_three_channels(tmp_path: Path) -> None:
    gray = np.array([[0, 17, 255], [128, 3, 99]], dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    np.testing.assert_array_equal(out, np.stack([gray] * 3, axis=2))


def test_palette_is_expanded_to_its_colours(tmp_path: Path) -> None:
    image = Image.new("P", (3, 1))
    palette = [0] * 768
    palette[3:6] = [10, 200, 30]
    palette[6:9] = [255, 0, 7]
    image.putpalette(palette)
    image.putdata([1, 2, 0])
    image.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(read_image(tmp_path / "p.png")[0], [[10, 200, 30], [255, 0, 7], [0, 0, 0]])


def test_gray_palette_is_replicated(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([v for i in range(256) for v in (i, i, i)])
    image.putdata([5, 250])
    image.save(tmp_path / "gp.png")
    np.testing.assert_array_equal(read_image(tmp_path / "gp.png")[0], [[5, 5, 5], [250, 250, 250]])


def test_palette_transparency_is_dropped_not_composited(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([9, 8, 7, 100, 110, 120] + [0] * 762)
    image.putdata([0, 1])
    image.save(tmp_path / "pt.png", transparency=0)
    np.testing.assert_array_equal(read_image(tmp_path / "pt.png")[0], [[9, 8, 7], [100, 110, 120]])


def test_rgba_alpha_is_discarded_without_compositing(tmp_path: Path) -> None:
    rgba = np.array([[[200, 100, 50, 0], [1, 2, 3, 128], [4, 5, 6, 255]]], dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_image(tmp_path / "a.png"), rgba[:, :, :3])


def test_la_alpha_is_discarded(tmp_path: Path) -> None:
    la = np.array([[[40, 0], [250, 7]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png")[0], [[40, 40, 40], [250, 250, 250]])


# round(v * 255 / 65535): 128 -> 0.498 -> 0, 129 -> 0.502 -> 1, 32896 -> 128.0, 40000 -> 155.65 -> 156
SIXTEEN = np.array([[0, 128, 129, 257, 32896, 40000, 65534, 65535]])
SIXTEEN_AS_8 = np.array([[0, 0, 1, 1, 128, 156, 255, 255]])


def test_16bit_gray_png_is_scaled_with_rounding(tmp_path: Path) -> None:
    Image.fromarray(SIXTEEN.astype(np.uint16)).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    out = read_image(tmp_path / "g16.png")
    np.testing.assert_array_equal(out, np.stack([SIXTEEN_AS_8] * 3, axis=2))


def test_16bit_big_endian_tiff_is_scaled(tmp_path: Path) -> None:
    Image.frombytes("I;16B", (8, 1), SIXTEEN.astype(">u2").tobytes()).save(tmp_path / "b.tif")
    assert Image.open(tmp_path / "b.tif").mode == "I;16B"
    np.testing.assert_array_equal(read_image(tmp_path / "b.tif")[:, :, 1], SIXTEEN_AS_8)


def test_mode_i_in_16bit_range_is_scaled_and_outside_rejected(tmp_path: Path) -> None:
    Image.fromarray(SIXTEEN.astype(np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_array_equal(read_image(tmp_path / "i.tif")[:, :, 2], SIXTEEN_AS_8)
    Image.fromarray(np.array([[0, 70000]], dtype=np.int32)).save(tmp_path / "big.tif")
    with pytest.raises(ImageError, match=r"big\.tif: unsupported image mode I with values 0\.\.70000"):
        read_image(tmp_path / "big.tif")


def test_16bit_rgb_png_takes_pillows_high_byte(tmp_path: Path) -> None:
    values = np.array([[[0, 257, 65535], [1000, 40000, 255]]])
    _png_16bit_rgb(tmp_path / "c16.png", values)
    np.testing.assert_array_equal(read_image(tmp_path / "c16.png"), values >> 8)


@pytest.mark.parametrize("mode", ["F", "CMYK", "1"])
def test_other_modes_are_rejected(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"m.{'tif' if mode == 'F' else 'jpg' if mode == 'CMYK' else 'png'}"
    Image.new(mode, (2, 2)).save(path)
    with pytest.raises(ImageError, match=rf"^{path}: unsupported image mode {mode}; "):
        read_image(path)


def test_corrupt_file_names_the_path(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good)
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:60])  # truncated inside the image data
    with pytest.raises(ImageError) as info:
        read_image(bad)
    message = str(info.value)
    assert message.startswith(f"{bad}: cannot read image (") and message.endswith(")")
    assert "\n" not in message


def test_not_an_image_and_missing_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageError, match=rf"^{text}: cannot read image \(cannot identify image file"):
        read_image(text)
    with pytest.raises(ImageError, match=rf"^{tmp_path / 'nope.png'}: cannot read image \(no such file\)$"):
        read_image(tmp_path / "nope.png")


def test_read_image_size_uses_the_header(tmp_path: Path) -> None:
    Image.new("RGB", (7, 3)).save(tmp_path / "s.png")
    assert read_image_size(tmp_path / "s.png") == (7, 3)
    (tmp_path / "t.png").write_text("text")
    with pytest.raises(ImageError, match=rf"^{tmp_path / 't.png'}: cannot read image \(cannot identify"):
        read_image_size(tmp_path / "t.png")


def test_write_image_round_trips_atomically(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    target = tmp_path / "sub" / "out.png"
    assert write_image(target, pixels) == target
    np.testing.assert_array_equal(read_image(target), pixels)
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.png"]  # no temp file left
    with pytest.raises(ImageError, match=r"out2\.png: expected a uint8 H x W x 3 array, got float32"):
        write_image(tmp_path / "out2.png", pixels.astype(np.float32))
    assert not (tmp_path / "out2.png").exists()


def test_nchw_conversions_round_trip_and_round_half_to_even() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, size=(4, 6, 3), dtype=np.uint8)
    nchw = to_nchw_float(pixels)
    assert nchw.dtype == np.float32 and nchw.shape == (1, 3, 4, 6)
    assert nchw[0, 2, 1, 5] == np.float32(pixels[1, 5, 2]) / np.float32(255)
    np.testing.assert_array_equal(from_nchw_float(nchw), pixels)

    # 0.5/255 * 255 and 2.5/255 * 255 are exact halves in float64: half to even gives 0 and 2;
    # -3 and 7 are clamped to 0 and 1 first.
    halves = np.array([0.5 / 255, 1.5 / 255, 2.5 / 255, -3.0, 7.0, 254.5 / 255], dtype=np.float64)
    arr = np.broadcast_to(halves, (1, 3, 1, 6))
    np.testing.assert_array_equal(from_nchw_float(arr)[0, :, 0], [0, 2, 2, 0, 255, 254])


def test_from_nchw_float_rejects_bad_shape_and_nan() -> None:
    with pytest.raises(ImageError, match=r"SR output: expected shape 1 x 3 x H x W, got \(1, 1, 2, 2\)"):
        from_nchw_float(np.zeros((1, 1, 2, 2), np.float32))
    bad = np.zeros((1, 3, 2, 2), np.float32)
    bad[0, 1, 1, 1] = np.nan
    with pytest.raises(ImageError, match=r"SR output: 1 NaN values"):
        from_nchw_float(bad)
