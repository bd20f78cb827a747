"""`drq build` and `drq calib-cache` through the dispatcher: outputs, one-line errors, exit code 2."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from drq.cli import main as drq
from drq.manifest import load_manifest
from drq.recipe import save_recipe
from engine_builder.calib_cache import read_cache
from tests.engine_builder.test_calib_cache import make_recipe
from tests.fakes import cuda as fake_cuda
from tests.fakes import tensorrt as fake_trt
from tests.fakes.tiny_onnx import float_sr

SHAPES = ["--min", "1x3x8x8", "--opt", "1x3x16x16", "--max", "1x3x32x32"]


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    model = tmp_path / "m.onnx"
    onnx.save(float_sr(), model)
    recipe = save_recipe(make_recipe({"head": 0.02, "tail": 0.1}), tmp_path / "r.json")
    return model, recipe


def test_build_with_recipe_calibrator(files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    fake_cuda.install(monkeypatch)
    trt = fake_trt.install(monkeypatch, "10.8.0")
    model, recipe = files
    code = drq(
        [
            "build",
            str(model),
            "-o",
            str(tmp_path / "m.plan"),
            *SHAPES,
            "--workspace-mib",
            "256",
            "--int8-calibrator",
            str(recipe),
            "--fp16",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    # a recipe alone scales the conv inputs only: TensorRT says which tensors make layers fall back
    warning, *rest = out.splitlines()
    assert warning.startswith(
        "warning: TensorRT: Missing scale and zero-point for tensor h, expect fall back"
    )
    wrote = next(line for line in rest if line.startswith("wrote"))
    assert (
        wrote.startswith(f"wrote {tmp_path / 'm.plan'} (") and "tensorrt 10.8.0, NVIDIA H200 sm 9.0" in wrote
    )
    served = trt.STATE.named("read_calibration_cache")[0].args[0].decode()
    assert served == "TRT-100800-EntropyCalibration2\nlr: 3ca3d70a\nr: 3dcccccd\n"
    m = load_manifest(tmp_path / "m.plan.json")
    assert m.int8 and m.fp16 and m.profile.opt == (1, 3, 16, 16)


def test_build_user_errors_are_one_line_exit_2(
    files, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    fake_cuda.install(monkeypatch)
    fake_trt.install(monkeypatch, "11.4.0")
    model, _ = files
    assert drq(["build", str(model), "-o", str(tmp_path / "m.plan"), *SHAPES, "--fp16"]) == 2
    assert (
        capsys.readouterr().err
        == "drq build: --fp16 (BuilderFlag.FP16) needs TensorRT <= 10.x; found tensorrt 11.4.0\n"
    )
    assert drq(["build", str(model), "-o", str(tmp_path / "m.plan"), "--min", "1x3x8"]) == 2
    assert capsys.readouterr().err == "drq build: --min/--opt/--max: give all three shapes or none\n"
    assert drq(["build", str(model), "-o", "x.plan", "--min", "axb", "--opt", "1", "--max", "1"]) == 2
    assert "drq build: --min 'axb': expected positive integers" in capsys.readouterr().err


def test_calib_cache_command(files, tmp_path: Path, capsys):
    model, recipe = files
    out = tmp_path / "cache.txt"
    assert (
        drq(
            [
                "calib-cache",
                "--recipe",
                str(recipe),
                "--onnx",
                str(model),
                "-o",
                str(out),
                "--algorithm",
                "minmax",
                "--tensorrt-version",
                "8.6.1",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.splitlines() == [
        f"wrote {out} (TRT-8601-MinMaxCalibration, 2 tensors)",
        "note: 3 tensor(s) of INT8-eligible layers have no scale (first: h); TensorRT runs the layers "
        "reading or writing them in float; give --calib DIR to observe them",
    ]
    assert out.read_text() == "TRT-8601-MinMaxCalibration\nlr: 3ca3d70a\nr: 3dcccccd\n"
    assert read_cache(out).algorithm == "minmax"


def test_calib_cache_command_errors(files, tmp_path: Path, capsys):
    model, _ = files
    split = save_recipe(make_recipe({"head": 0.1}, budget="split"), tmp_path / "split.json")
    assert (
        drq(["calib-cache", "--recipe", str(split), "--onnx", str(model), "-o", str(tmp_path / "c.txt")]) == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"drq calib-cache: {split}: recipe layer 'head': the 'split' dual-region budget")
    assert err.count("\n") == 1
    qdq = tmp_path / "q.onnx"
    onnx.save(float_sr(qdq=True), qdq)
    recipe = tmp_path / "r.json"
    assert (
        drq(["calib-cache", "--recipe", str(recipe), "--onnx", str(qdq), "-o", str(tmp_path / "c.txt")]) == 2
    )
    assert "layer 'head' already has Q/DQ on its input" in capsys.readouterr().err
