"""Models and inputs are checked before any output is written: input/output signature, the upscaling
factor, and every image of a batch."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from drq.cli import main
from engine_builder.lowerings.graph import set_metadata
from serve.errors import RunnerError
from serve.runtime.signature import check_image_signature, check_upscaled
from tests.fakes.tiny_onnx import float_sr


def _identity(path: Path, shape: list, scale: int | None = None) -> Path:
    x = helper.make_tensor_value_info("lr", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("sr", TensorProto.FLOAT, shape)
    graph = helper.make_graph([helper.make_node("Identity", ["lr"], ["sr"])], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if scale:
        set_metadata(model, {"drq.scale": str(scale)})
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "a.png"
    path.parent.mkdir()
    Image.fromarray(np.full((6, 5, 3), 100, np.uint8), "RGB").save(path)
    return path


@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ([1, 1, None, None], r"input 'lr' has shape 1x1x\?x\? \(rank 4, 1 channels\); drq runs SR models"),
        ([1, 3], r"input 'lr' has shape 1x3 \(rank 2\)"),
        ([1, 3, None, None, 1], r"input 'lr' has shape 1x3x\?x\?x1 \(rank 5\)"),
    ],
)
@pytest.mark.parametrize("command", ["upscale", "eval"])
def test_wrong_input_signature_is_one_line(
    tmp_path: Path, image: Path, capsys, shape: list, message: str, command: str
) -> None:
    model = _identity(tmp_path / "m.onnx", shape, scale=2)
    if command == "upscale":
        argv = ["upscale", "--onnx", str(model), str(image), "-o", str(tmp_path / "out")]
    else:
        argv = ["eval", "--onnx", str(model), "--data", str(image.parent), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"drq {command}: {model}: ")
    assert re.search(message, err)
    assert not (tmp_path / "out").exists()


def test_upscale_refuses_an_output_that_is_not_the_declared_scale(
    tmp_path: Path, image: Path, capsys
) -> None:
    model = float_sr(scale=2)
    set_metadata(model, {"drq.scale": "4"})
    onnx.save(model, str(tmp_path / "x2_says_x4.onnx"))
    out = tmp_path / "out"
    assert main(["upscale", "--onnx", str(tmp_path / "x2_says_x4.onnx"), str(image), "-o", str(out)]) == 2
    assert capsys.readouterr().err == (
        f"drq upscale: {tmp_path / 'x2_says_x4.onnx'}: returned shape (1, 3, 12, 10) for 1 tiles of 5x6 "
        "at x4; expected (1, 3, 24, 20)\n"
    )
    assert not out.exists() or not list(out.iterdir())


def test_upscale_checks_every_input_before_writing_any(tmp_path: Path, image: Path, capsys) -> None:
    onnx.save(float_sr(scale=2), str(tmp_path / "m.onnx"))
    bad = image.parent / "z_broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cmyk = image.parent / "y_cmyk.jpg"
    Image.new("CMYK", (4, 4)).save(cmyk)
    out = tmp_path / "out"
    argv = ["upscale", "--onnx", str(tmp_path / "m.onnx"), "-o", str(out), "--quiet"]
    assert main([*argv, str(image), str(cmyk)]) == 2
    assert capsys.readouterr().err == (
        f"drq upscale: {cmyk}: unsupported image mode CMYK; convert it to 8-bit RGB\n"
    )
    assert main([*argv, str(image.parent)]) == 2
    assert capsys.readouterr().err.startswith(f"drq upscale: {cmyk}: unsupported image mode")
    cmyk.unlink()
    assert main([*argv, str(image.parent)]) == 2
    assert capsys.readouterr().err.startswith(f"drq upscale: {bad}: cannot read image")
    assert not out.exists()  # a.png (valid, listed first) was not written either
    bad.unlink()
    assert main([*argv, str(image.parent)]) == 0  # a rerun needs no --overwrite
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]


def test_signature_helpers() -> None:
    check_image_signature("m", "input 'lr'", [None, 3, "h", "w"])
    check_upscaled("m", (1, 3, 4, 5), (1, 3, 8, 10), 2)
    with pytest.raises(RunnerError, match=r"^m: gave 1x3x8x9 for 1x3x4x5, not x2 \(1x3x8x10\)"):
        check_upscaled("m", (1, 3, 4, 5), (1, 3, 8, 9), 2)


def test_engine_of_a_one_channel_model_is_refused_when_opened(tmp_path: Path, monkeypatch) -> None:
    from engine_builder.build import BuildConfig, build_engine
    from serve.runtime.trt import TrtRunner
    from tests.fakes import cuda as fake_cuda
    from tests.fakes import tensorrt as fake_trt

    fake_cuda.install(monkeypatch)
    fake_trt.install(monkeypatch, "10.13.0.35")
    model = _identity(tmp_path / "gray.onnx", [1, 1, None, None], scale=2)
    shapes = {"min_shape": (1, 1, 8, 8), "opt_shape": (1, 1, 8, 8), "max_shape": (1, 1, 16, 16)}
    engine = build_engine(BuildConfig(onnx=model, output=tmp_path / "gray.plan", **shapes)).engine
    with pytest.raises(
        RunnerError, match=r"gray.plan: input 'lr' \(profile min\) has shape 1x1x8x8 \(rank 4, 1 ch"
    ):
        TrtRunner(engine)
