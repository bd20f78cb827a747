"""The pixel limit: checked from the header before decoding, one line naming file and limit, exit 2."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from drq.cli import main
from drq.errors import ImageError
from drq.imaging import io as image_io
from tests.fakes.conv_chain import conv_chain_sr

pytestmark = pytest.mark.torch_free


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims `width x height` (8-bit RGB) with almost no pixel data: a bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b""))
        + _chunk(b"IEND", b"")
    )
    path.write_bytes(data)
    return path


@pytest.fixture(autouse=True)
def _default_limit():
    yield
    image_io.set_pixel_limit(image_io.DEFAULT_MAX_PIXELS)


def test_a_4000x3000_photo_is_within_the_default_and_a_bomb_is_not(tmp_path: Path) -> None:
    assert image_io.DEFAULT_MAX_PIXELS >= 4000 * 3000
    assert image_io.read_image_size(png_header_only(tmp_path / "photo.png", 4000, 3000)) == (4000, 3000)
    bomb = png_header_only(tmp_path / "bomb.png", 10000, 10000)
    for read in (image_io.read_image, image_io.read_image_size):
        with pytest.raises(ImageError) as err:
            read(bomb)
        assert str(err.value) == (
            f"{bomb}: 10000x10000 is 100000000 pixels, over the pixel limit of 16000000 "
            "(--max-pixels, or DRQ_MAX_PIXELS for every command)"
        )


def test_pillows_decompression_bomb_warning_and_error_never_leak(tmp_path: Path) -> None:
    warned = png_header_only(tmp_path / "warned.png", 12000, 10000)  # above Pillow's warning threshold
    refused = png_header_only(tmp_path / "refused.png", 20000, 20000)  # above Pillow's error threshold
    image_io.set_pixel_limit(10**9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked DecompressionBombWarning fails the test
        assert image_io.read_image_size(warned) == (12000, 10000)
        with pytest.raises(ImageError, match=r"refused.png: more than \d+ pixels, over the pixel limit"):
            image_io.read_image_size(refused)


def test_upscale_checks_every_header_before_writing_anything(tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(conv_chain_sr(2), str(model))
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(folder / "b.png")
    out = tmp_path / "out"
    code = main(["upscale", "--onnx", str(model), str(folder), "-o", str(out), "--max-pixels", "70"])
    assert code == 2 and not out.exists()
    err = capsys.readouterr().err.strip()
    assert err == (
        f"drq upscale: {folder / 'b.png'}: 9x9 is 81 pixels, over the pixel limit of 70 "
        "(--max-pixels, or DRQ_MAX_PIXELS for every command)"
    )


def test_eval_refuses_an_oversize_image_when_it_opens_the_dataset(tmp_path: Path, capsys) -> None:
    model = tmp_path / "m.onnx"
    onnx.save(conv_chain_sr(2), str(model))
    data = tmp_path / "set"
    data.mkdir()
    png_header_only(data / "huge.png", 6000, 6000)
    assert main(["eval", "--onnx", str(model), "--data", str(data), "--quiet"]) == 2
    assert (
        "huge.png: 6000x6000 is 36000000 pixels, over the pixel limit of 16000000" in capsys.readouterr().err
    )


def test_every_command_takes_the_limit_from_drq_max_pixels(tmp_path: Path, monkeypatch, capsys) -> None:
    data = tmp_path / "calib"
    data.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(data / "a.png")
    monkeypatch.setenv("DRQ_MAX_PIXELS", "1000")
    model = tmp_path / "m.onnx"
    onnx.save(conv_chain_sr(2), str(model))
    assert main(["eval", "--onnx", str(model), "--data", str(data), "--quiet"]) == 2
    assert "40x40 is 1600 pixels, over the pixel limit of 1000" in capsys.readouterr().err
    # quantize's calibration crops read through the same check
    from drq.imaging.datasets import calib_crops

    with pytest.raises(ImageError, match="a.png: 40x40 is 1600 pixels, over the pixel limit of 1000"):
        calib_crops(data, 2, 8, 1)
    monkeypatch.setenv("DRQ_MAX_PIXELS", "lots")
    assert main(["eval", "--onnx", str(model), "--data", str(data)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "drq eval: DRQ_MAX_PIXELS: must be a positive number of pixels, got 'lots'"
    )
