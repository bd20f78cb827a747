"""Calibration cache I/O: TensorRT's text format, round trips, recipe -> scales, ModelOpt's parser."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from drq.recipe import (
    CalibrationInfo,
    DualRegionAct,
    LayerRecipe,
    ModelIdentity,
    Recipe,
    UniformAct,
    WeightQuant,
)
from engine_builder.calib_cache import (
    CalibCache,
    CalibCacheError,
    cache_from_recipe,
    format_cache,
    hex_scale,
    input_tensor_map,
    modelopt_misread_tensors,
    parse_cache,
    read_cache,
    scale_hex,
    version_code,
    write_cache,
)
from tests.fakes.tiny_onnx import float_sr


def make_recipe(
    scales: dict[str, float], budget: str = "uniform", bits: int = 8, zero_point: int = 0
) -> Recipe:
    layers = {}
    for name, s in scales.items():
        if budget == "uniform":
            act = UniformAct(bits=bits, scale=s, zero_point=zero_point)
        else:
            act = DualRegionAct(
                budget=budget, bits=4, lower=-0.5, breakpoint=0.2, upper=3.0, outlier_scale=0.4
            )
        layers[name] = LayerRecipe(op="conv2d", weight=WeightQuant(bits=8, scale=(0.01,), axis=None), act=act)
    return Recipe(
        model=ModelIdentity(arch="tiny", scale=2, checkpoint_sha256=""),
        method="minmax",
        w_bits=8,
        a_bits=bits,
        budget=budget,
        weight_mode="per-channel",
        calibration=CalibrationInfo(images=1, crop=16, seed=0),
        layers=layers,
    )


def test_version_codes_follow_nvinfer_version_h():
    assert version_code("8.6.1") == 8601
    assert version_code("8.5.3.1") == 8503
    assert version_code("10.3.0") == 100300
    assert version_code("10.13.0.35") == 101300
    with pytest.raises(CalibCacheError, match="expected major.minor"):
        version_code("ten")


def test_scale_hex_is_big_endian_float32_with_leading_zeros():
    assert scale_hex(1.0) == "3f800000"
    assert scale_hex(1 / 127) == struct.pack(">f", np.float32(1 / 127)).hex() == "3c010204"
    assert scale_hex(1e-40) == "000116c2"  # denormal: leading zeros kept (bytes.fromhex needs 8 digits)
    for value in (1.0, 1 / 127, 0.0123, 1e-40, 3.4e38):
        assert hex_scale(scale_hex(value)) == float(np.float32(value))


def test_format_is_header_then_one_line_per_tensor():
    cache = CalibCache({"lr": 1 / 127, "r": 0.05}, version_code("8.6.1"), "entropy2")
    assert format_cache(cache) == "TRT-8601-EntropyCalibration2\nlr: 3c010204\nr: 3d4ccccd\n"
    minmax = CalibCache({"lr": 1.0}, version_code("10.3.0"), "minmax")
    assert format_cache(minmax).splitlines()[0] == "TRT-100300-MinMaxCalibration"


def test_round_trip_through_file(tmp_path: Path):
    cache = CalibCache({"lr": 0.0078125, "/body/r": 0.031, "t:0": 2.5e-3}, version_code("10.8.0"), "minmax")
    path = write_cache(cache, tmp_path / "cache.txt")
    back = read_cache(path)
    assert back == CalibCache({k: float(np.float32(v)) for k, v in cache.scales.items()}, 100800, "minmax")
    assert list(back.scales) == ["lr", "/body/r", "t:0"]  # file order kept
    assert format_cache(back) == path.read_text()


def test_parse_accepts_tensorrt_written_text():
    text = "TRT-8601-EntropyCalibration2\r\ninput.1: 3c010a14\r\nonnx::Conv_12: 3d7f0d85\r\n"
    cache = parse_cache(text)
    assert cache.version == 8601 and cache.algorithm == "entropy2"
    assert cache.scales["onnx::Conv_12"] == struct.unpack(">f", bytes.fromhex("3d7f0d85"))[0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "cache.txt: empty file"),
        (
            "TRT-8601-Legacy\nlr: 3f800000\n",
            "cache.txt: line 1: expected 'TRT-<version>-EntropyCalibration2'",
        ),
        (
            "TRT-8601-EntropyCalibration2\nlr 3f800000\n",
            "cache.txt: line 2: expected '<tensor>: <8 hex digits>'",
        ),
        ("TRT-8601-EntropyCalibration2\nlr: 3f8000\n", "cache.txt: line 2: expected"),
        (
            "TRT-8601-EntropyCalibration2\nlr: 3f800000\nlr: 3f800000\n",
            "cache.txt: line 3: tensor 'lr' appears twice",
        ),
        (
            "TRT-8601-EntropyCalibration2\nlr: bf800000\n",
            "cache.txt: tensor 'lr': scale must be finite and > 0",
        ),
        (
            "TRT-8601-EntropyCalibration2\n",
            "cache.txt: scales: a calibration cache needs at least one tensor",
        ),
    ],
)
def test_parse_errors_are_one_line_and_name_the_line(text: str, message: str):
    with pytest.raises(CalibCacheError) as info:
        parse_cache(text, "cache.txt")
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_read_missing_file(tmp_path: Path):
    with pytest.raises(CalibCacheError, match=r"nope.txt: no such calibration cache"):
        read_cache(tmp_path / "nope.txt")


def test_input_tensor_map_names_conv_inputs():
    assert input_tensor_map(float_sr()) == {"head": "lr", "tail": "r"}


def test_input_tensor_map_refuses_quantized_graph():
    with pytest.raises(CalibCacheError, match="layer 'head' already has Q/DQ on its input"):
        input_tensor_map(float_sr(qdq=True))


def test_cache_from_recipe_keys_scales_by_tensor():
    recipe = make_recipe({"head": 0.02, "tail": 0.1})
    cache = cache_from_recipe(recipe, input_tensor_map(float_sr()), version="8.6.1")
    assert cache.header == "TRT-8601-EntropyCalibration2"
    assert cache.scales == {"lr": float(np.float32(0.02)), "r": float(np.float32(0.1))}


def test_split_recipe_cannot_be_one_scale():
    with pytest.raises(
        CalibCacheError,
        match=r"recipe layer 'head': the 'split' dual-region budget has a dense "
        "and an outlier scale",
    ):
        cache_from_recipe(make_recipe({"head": 0.1}, budget="split"), {"head": "lr"})


@pytest.mark.parametrize(
    ("bits", "zp", "what"), [(4, 0, "4-bit signed zero point 0"), (8, 3, "8-bit signed zero point 3")]
)
def test_non_int8_symmetric_recipes_are_refused(bits: int, zp: int, what: str):
    with pytest.raises(CalibCacheError, match=f"needs 8-bit signed symmetric activations, got {what}"):
        cache_from_recipe(make_recipe({"head": 0.1}, bits=bits, zero_point=zp), {"head": "lr"})


def test_missing_tensor_name_and_conflicts():
    recipe = make_recipe({"head": 0.02, "tail": 0.1})
    with pytest.raises(CalibCacheError, match="recipe layer 'tail': no ONNX input tensor name"):
        cache_from_recipe(recipe, {"head": "lr"})
    with pytest.raises(CalibCacheError, match="tensor 'x': layers 'head' and 'tail' read it with scales"):
        cache_from_recipe(recipe, {"head": "x", "tail": "x"})
    merged = cache_from_recipe(recipe, {"head": "x", "tail": "x"}, on_conflict="max")
    assert merged.scales == {"x": float(np.float32(0.1))}


def modelopt_import_scales(path: Path) -> dict[str, float]:
    """ModelOpt's parsing rules, restated: nvidia-modelopt 0.47.0,
    modelopt/onnx/quantization/calib_utils.py, import_scales_from_calib_cache (lines 154-179):
    readlines(); skip line 0; `name, hex = line.replace("\\n", "").split(": ")` (must be exactly two
    parts); `struct.unpack("!f", bytes.fromhex(hex))[0]`; key `name + "_scale"`."""
    out = {}
    with open(path) as handle:
        for i, line in enumerate(handle.readlines()):
            if i > 0:
                name, value = line.replace("\n", "").split(": ")
                out[name + "_scale"] = struct.unpack("!f", bytes.fromhex(value))[0]
    return out


def test_modelopt_parses_our_cache_to_the_recipe_scales(tmp_path: Path):
    recipe = make_recipe({"head": 0.0123, "tail": 1e-9})
    path = write_cache(cache_from_recipe(recipe, input_tensor_map(float_sr())), tmp_path / "c.txt")
    assert modelopt_import_scales(path) == {
        "lr_scale": float(np.float32(0.0123)),
        "r_scale": float(np.float32(1e-9)),
    }


def test_real_modelopt_reads_our_cache(tmp_path: Path):
    """Runs only where nvidia-modelopt (with its [onnx] extras) imports; measured with 0.47.0:
    {'lr_scale': 0.0123, 'r_scale': 0.25}, and quantize(..., calibration_cache_path=) put scale 0.0123 on
    the QuantizeLinear of `lr`."""
    calib_utils = pytest.importorskip(
        "modelopt.onnx.quantization.calib_utils",
        reason="needs NVIDIA ModelOpt: pip install 'drq[modelopt]'",
        exc_type=ImportError,
    )
    recipe = make_recipe({"head": 0.0123, "tail": 0.25})
    path = write_cache(cache_from_recipe(recipe, input_tensor_map(float_sr())), tmp_path / "c.txt")
    assert calib_utils.import_scales_from_calib_cache(str(path)) == modelopt_import_scales(path)


def test_modelopt_misread_tensors_are_names_containing_scale():
    cache = CalibCache({"lr": 0.1, "/up_scale/Conv_output_0": 0.2, "/scale/x": 0.3, "a_scale": 0.4})
    assert modelopt_misread_tensors(cache) == ("/up_scale/Conv_output_0", "a_scale")


def test_command_notes_tensors_modelopt_would_drop(tmp_path: Path, capsys):
    import onnx

    from drq.artifacts import atomic_write_text
    from drq.cli import main

    model = float_sr()
    for node in model.graph.node:  # the tail conv's input becomes "r_scale"
        node.input[:] = ["r_scale" if n == "r" else n for n in node.input]
        node.output[:] = ["r_scale" if n == "r" else n for n in node.output]
    onnx.save(model, str(tmp_path / "m.onnx"))
    atomic_write_text(tmp_path / "r.json", json.dumps(make_recipe({"head": 0.02, "tail": 0.1}).to_dict()))
    argv = ["calib-cache", "--recipe", str(tmp_path / "r.json"), "--onnx", str(tmp_path / "m.onnx")]
    assert main([*argv, "-o", str(tmp_path / "c.txt")]) == 0
    out = capsys.readouterr().out
    assert "note: ModelOpt's calibration_cache_path reader cannot match 1 tensor(s)" in out
    assert "(first: r_scale)" in out
    assert read_cache(tmp_path / "c.txt").scales["r_scale"] == float(np.float32(0.1))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("drq.arch", "pan", "drq.arch is 'pan', the recipe's model has 'tiny'"),
        ("drq.scale", "4", "drq.scale is '4', the recipe's model has '2'"),
        ("drq.checkpoint_sha256", "ab" * 32, "drq.checkpoint_sha256 is 'abababababababab', the recipe's"),
    ],
)
def test_command_refuses_an_onnx_of_another_model(tmp_path: Path, capsys, key: str, value: str, message: str):
    import dataclasses

    import onnx

    from drq.cli import main
    from engine_builder.lowerings.graph import set_metadata

    model = float_sr()
    set_metadata(model, {"drq.arch": "tiny", "drq.scale": "2", key: value})
    onnx.save(model, str(tmp_path / "m.onnx"))
    recipe = make_recipe({"head": 0.02, "tail": 0.1})
    identity = dataclasses.replace(recipe.model, checkpoint_sha256="cd" * 32)
    (tmp_path / "r.json").write_text(json.dumps(dataclasses.replace(recipe, model=identity).to_dict()))
    argv = ["calib-cache", "--recipe", str(tmp_path / "r.json"), "--onnx", str(tmp_path / "m.onnx")]
    before = sorted(tmp_path.iterdir())
    assert main([*argv, "-o", str(tmp_path / "c.txt")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"drq calib-cache: {tmp_path / 'm.onnx'}: {message}")
    assert "\n" not in err and sorted(tmp_path.iterdir()) == before


def test_command_refuses_a_nonsense_tensorrt_version(tmp_path: Path, capsys):
    from drq.cli import main

    argv = ["calib-cache", "--recipe", "r.json", "--onnx", "m.onnx", "-o", str(tmp_path / "c.txt")]
    assert main([*argv, "--tensorrt-version=-1.-2"]) == 2
    assert capsys.readouterr().err == (
        "drq calib-cache: --tensorrt-version: TensorRT version '-1.-2': expected major.minor[.patch], "
        "e.g. 10.8.0\n"
    )
    with pytest.raises(CalibCacheError, match="expected major.minor"):
        version_code("10.-2")
