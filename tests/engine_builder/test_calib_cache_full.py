"""The full calibration cache (item 6): a scale for every tensor TensorRT's INT8 layers read or write, so
implicit INT8 (TensorRT <= 10.x) keeps every INT8-eligible layer in INT8. Checked with the TensorRT
stand-in, which logs TensorRT's "Missing scale and zero-point" warning and falls back per layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx.reference import ReferenceEvaluator

from drq.cli import main as drq
from drq.imaging.io import write_image
from drq.recipe import save_recipe
from engine_builder.build import BuildConfig, build_engine
from engine_builder.calib_cache import (
    CalibCache,
    CalibCacheError,
    cache_from_recipe,
    complete_cache,
    input_tensor_map,
    int8_tensors,
    missing_int8_tensors,
    read_cache,
    scales_from_ranges,
    write_cache,
)
from tests.engine_builder.test_calib_cache import make_recipe
from tests.fakes import cuda as fake_cuda
from tests.fakes import tensorrt as fake_trt
from tests.fakes.tiny_onnx import float_sr

pytest.importorskip("onnxruntime")
SHAPES = {"min_shape": (1, 3, 8, 8), "opt_shape": (1, 3, 16, 16), "max_shape": (1, 3, 32, 32)}


@pytest.fixture
def hr_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "hr"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i in range(8):
        write_image(folder / f"{i}.png", rng.integers(0, 256, (160, 144, 3), dtype=np.uint8))
    return folder


def test_int8_tensors_are_every_activation_of_eligible_layers():
    # Conv -> Relu -> Conv -> DepthToSpace: all five activations are read or written by an INT8 layer
    assert int8_tensors(float_sr()) == ["lr", "h", "r", "t", "sr"]


def test_scales_from_ranges_are_amax_over_127():
    scales = scales_from_ranges({"a": (-0.5, 2.54), "b": (0.0, 0.0)})
    assert scales["a"] == float(np.float32(2.54) / np.float32(127))
    assert scales["b"] == float(np.float32(1) / np.float32(127))  # all-zero tensor: any scale codes 0


def test_complete_cache_keeps_recipe_scales_and_refuses_gaps():
    model = float_sr()
    recipe_cache = cache_from_recipe(make_recipe({"head": 0.02, "tail": 0.1}), input_tensor_map(model))
    observed = {"lr": 9.0, "h": 0.3, "r": 7.0, "t": 0.4, "sr": 0.5}
    full = complete_cache(recipe_cache, observed, model)
    f32 = lambda v: float(np.float32(v))  # noqa: E731 (recipe scales are float32)
    assert dict(full.scales) == {"lr": f32(0.02), "h": 0.3, "r": f32(0.1), "t": 0.4, "sr": 0.5}
    assert missing_int8_tensors(recipe_cache, model) == ("h", "t", "sr")
    assert missing_int8_tensors(full, model) == ()
    with pytest.raises(CalibCacheError, match="tensor 't': no recipe scale and no observed range"):
        complete_cache(recipe_cache, {"h": 0.3, "sr": 0.5}, model)


def test_calib_cache_command_observes_every_other_tensor(tmp_path: Path, hr_folder: Path, capsys):
    model_path = tmp_path / "m.onnx"
    onnx.save(float_sr(), model_path)
    recipe = save_recipe(make_recipe({"head": 0.02, "tail": 0.1}), tmp_path / "r.json")
    partial, full = tmp_path / "partial.cache", tmp_path / "full.cache"
    assert drq(["calib-cache", "--recipe", str(recipe), "--onnx", str(model_path), "-o", str(partial)]) == 0
    assert "note: 3 tensor(s) of INT8-eligible layers have no scale (first: h)" in capsys.readouterr().out
    args = ["--recipe", str(recipe), "--onnx", str(model_path), "-o", str(full), "--calib", str(hr_folder)]
    assert drq(["calib-cache", *args, "--images", "4"]) == 0
    assert "no scale" not in capsys.readouterr().out
    cache = read_cache(full)
    assert list(cache.scales) == ["lr", "h", "r", "t", "sr"]
    assert (cache.scales["lr"], cache.scales["r"]) == (np.float32(0.02), np.float32(0.1))  # recipe wins
    # the observed scales, recomputed with onnx's reference evaluator (not onnxruntime) on the same crops
    from drq.imaging.datasets import calib_crops

    evaluator = ReferenceEvaluator(float_sr())
    amax = dict.fromkeys(("h", "t", "sr"), 0.0)
    for crop in calib_crops(hr_folder, 2, 64, 4, seed=0):
        for name, value in zip(
            ("h", "t", "sr"), evaluator.run(["h", "t", "sr"], {"lr": crop[None]}), strict=True
        ):
            amax[name] = max(amax[name], float(np.abs(value).max()))
    for name, value in amax.items():
        assert cache.scales[name] == pytest.approx(value / 127, rel=1e-5), name


def _build(model: Path, cache: Path, monkeypatch: pytest.MonkeyPatch):
    fake_cuda.install(monkeypatch)
    trt = fake_trt.install(monkeypatch, "10.8.0")
    result = build_engine(
        BuildConfig(onnx=model, output=model.with_suffix(".plan"), calib_cache=cache, **SHAPES)
    )
    return trt, result


def test_tensorrt_keeps_every_eligible_layer_int8_only_with_the_full_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    model = tmp_path / "m.onnx"
    onnx.save(float_sr(), model)
    recipe_cache = cache_from_recipe(make_recipe({"head": 0.02, "tail": 0.1}), input_tensor_map(float_sr()))
    trt, result = _build(model, write_cache(recipe_cache, tmp_path / "conv_inputs.cache"), monkeypatch)
    # the old cache (conv inputs only): every layer falls back, with TensorRT's warning per tensor
    assert [c.args[0] for c in trt.STATE.named("int8_fallback")] == [
        "/head/Conv",
        "/act/Relu",
        "/tail/Conv",
        "/ps/DepthToSpace",
    ]
    assert any(w.startswith("Missing scale and zero-point for tensor h,") for w in result.warnings)
    full = complete_cache(recipe_cache, {"h": 0.3, "t": 0.4, "sr": 0.5}, float_sr())
    trt, result = _build(model, write_cache(full, tmp_path / "full.cache"), monkeypatch)
    assert trt.STATE.named("int8_fallback") == []
    assert not [w for w in result.warnings if "Missing scale" in w]


def test_build_command_completes_a_recipe_cache_with_calib(
    tmp_path: Path, hr_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    fake_cuda.install(monkeypatch)
    trt = fake_trt.install(monkeypatch, "10.8.0")
    model = tmp_path / "m.onnx"
    onnx.save(float_sr(), model)
    recipe = save_recipe(make_recipe({"head": 0.02, "tail": 0.1}), tmp_path / "r.json")
    shapes = ["--min", "1x3x8x8", "--opt", "1x3x16x16", "--max", "1x3x32x32"]
    base = ["build", str(model), "-o", str(tmp_path / "m.plan"), *shapes, "--int8-calibrator", str(recipe)]
    assert drq([*base, "--calib", str(hr_folder)]) == 0
    served = trt.STATE.named("read_calibration_cache")[0].args[0].decode().splitlines()
    assert [line.split(": ")[0] for line in served[1:]] == ["lr", "h", "r", "t", "sr"]
    assert trt.STATE.named("int8_fallback") == [] and "Missing scale" not in capsys.readouterr().out
    cache = tmp_path / "c.cache"
    write_cache(CalibCache({"lr": 0.02}), cache)
    assert (
        drq(
            [
                "build",
                str(model),
                "-o",
                str(tmp_path / "n.plan"),
                *shapes,
                "--int8-calibrator",
                str(cache),
                "--calib",
                str(hr_folder),
            ]
        )
        == 2
    )
    assert (
        capsys.readouterr().err
        == f"drq build: --calib: {cache} is a calibration cache already; give a recipe\n"
    )


@pytest.mark.shared_data
def test_imdn_full_cache_leaves_no_int8_layer_without_a_scale(
    shared_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """IMDN x4 (Split, Concat, LeakyReLU, residual Adds, channel attention, pixel shuffle): the recipe's
    34 conv inputs plus the observed tensors cover every INT8-eligible layer."""
    assert (
        drq(
            [
                "export",
                "--arch",
                "imdn",
                "--weights",
                str(shared_dir / "sr_weights" / "imdn_x4.pth"),
                "--scale",
                "4",
                "-o",
                str(tmp_path / "imdn.onnx"),
            ]
        )
        == 0
    )
    model = onnx.load(str(tmp_path / "imdn.onnx"))
    from engine_builder.calib_cache import complete_from_images
    from tests.engine_builder.test_calib_cache import make_recipe as recipe_of

    names = input_tensor_map(model)
    recipe = recipe_of(dict.fromkeys(names, 0.01))
    partial = cache_from_recipe(recipe, names)
    full = complete_from_images(partial, model, shared_dir / "sr_calib" / "bsd200", 4, images=2)
    assert len(missing_int8_tensors(partial, model)) > 100 and missing_int8_tensors(full, model) == ()
    trt, _ = _build(tmp_path / "imdn.onnx", write_cache(full, tmp_path / "full.cache"), monkeypatch)
    assert trt.STATE.named("int8_fallback") == []
    assert len(int8_tensors(model)) == len(full.scales)
