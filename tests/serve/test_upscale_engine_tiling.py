"""`drq upscale --engine` tiles with the profile's max H x W and the manifest ONNX's receptive field."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from drq.cli import main
from engine_builder.build import BuildConfig, build_engine
from tests.fakes import cuda as fake_cuda
from tests.fakes import tensorrt as fake_trt
from tests.fakes.tiny_onnx import float_sr


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rt = fake_cuda.install(monkeypatch)
    trt = fake_trt.install(monkeypatch, "10.13.0.35")
    trt.STATE.memory = rt.MEMORY
    onnx.save(float_sr(), tmp_path / "m.onnx")
    plan = tmp_path / "m.plan"
    config = BuildConfig(
        onnx=tmp_path / "m.onnx",
        output=plan,
        min_shape=(1, 3, 8, 8),
        opt_shape=(1, 3, 16, 16),
        max_shape=(2, 3, 32, 48),
    )
    build_engine(config)
    trt.STATE.calls.clear()
    return trt, plan


def test_an_image_larger_than_the_profile_runs_in_profile_sized_batched_tiles(engine, tmp_path: Path) -> None:
    trt, plan = engine
    image = np.random.default_rng(1).integers(0, 256, (70, 90, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "big.png")
    out = tmp_path / "out"
    argv = [
        "upscale",
        "--engine",
        str(plan),
        str(tmp_path / "big.png"),
        "-o",
        str(out),
        "--batch",
        "4",
        "--quiet",
    ]
    assert main(argv) == 0
    shapes = {c.args[1] for c in trt.STATE.named("set_input_shape")}
    assert shapes <= {(2, 3, 32, 48), (1, 3, 32, 48)} and (2, 3, 32, 48) in shapes  # batch capped at max N
    # The stand-in engine upscales by pixel repetition, so the stitched output is exactly that.
    expected = image.repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(np.asarray(Image.open(out / "big.png")), expected)


def test_a_tile_beyond_the_profile_is_refused(engine, tmp_path: Path, capsys) -> None:
    _, plan = engine
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    argv = [
        "upscale",
        "--engine",
        str(plan),
        str(tmp_path / "a.png"),
        "-o",
        str(tmp_path / "o"),
        "--tile",
        "40",
    ]
    assert main(argv) == 2
    assert (
        capsys.readouterr().err.strip()
        == "drq upscale: --tile 40: larger than the engine's profile max 48x32"
    )
