"""FP16 glue (engine_builder.lowerings.fp16_glue): every quantizing lowering's graph with all float compute
in float16, float16 Q/DQ scales, and casts only at the graph I/O; quality on Set5 against FP32 glue."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from engine_builder.errors import ExportError
from engine_builder.export.torch_export import export_float_onnx
from engine_builder.lowerings.common import LoweringOptions
from engine_builder.lowerings.fp16_glue import GLUE_OPSET, apply_fp16_glue, float32_compute_nodes
from engine_builder.lowerings.graph import metadata, opset_of
from engine_builder.lowerings.registry import lower
from tests.engine_builder.test_export import TinySR, make_recipe

ort = pytest.importorskip("onnxruntime")

QUANTIZING = [
    ("qdq", "uniform", LoweringOptions(glue="fp16")),
    ("drq-split", "split", LoweringOptions(glue="fp16")),
    ("drq-split", "split", LoweringOptions(glue="fp16", outlier_channels_only=True)),
    ("drq-plugin", "b-bit", LoweringOptions(glue="fp16")),
]
IDS = ["qdq", "drq-split", "drq-split-outlier-channels", "drq-plugin"]


@pytest.fixture(scope="module")
def net_and_graph():
    net = TinySR().eval()
    return net, export_float_onnx(net, scale=2)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"lr": x})[0]


def _types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    out = {t.name: t.data_type for t in inferred.graph.initializer}
    for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        out[v.name] = v.type.tensor_type.elem_type
    return out


@pytest.mark.parametrize("lowering,budget,options", QUANTIZING, ids=IDS)
def test_no_fp32_compute_remains_but_the_io_casts(net_and_graph, lowering, budget, options) -> None:
    net, graph = net_and_graph
    recipe = make_recipe(net, budget)
    fp32_glue = lower(lowering, graph, recipe)
    half = lower(lowering, graph, recipe, options)
    assert float32_compute_nodes(fp32_glue)  # the check can fail: the FP32-glue graph has many
    assert float32_compute_nodes(half) == []
    assert opset_of(half) >= GLUE_OPSET and metadata(half)["drq.glue"] == "fp16"
    types = _types(half)
    casts = [n for n in half.graph.node if n.op_type == "Cast"]
    assert [(c.input[0], types[c.output[0]]) for c in casts if c.input[0] == "lr"] == [
        ("lr", TensorProto.FLOAT16)
    ]
    assert [c.output[0] for c in casts if c.output[0] == "sr"] == ["sr"]
    assert types["lr"] == types["sr"] == TensorProto.FLOAT
    for node in half.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            assert types[node.input[1]] == TensorProto.FLOAT16, node.name
        if node.op_type == "DequantizeLinear":
            assert types[node.output[0]] == TensorProto.FLOAT16, node.name
        if node.op_type in ("Conv", "ConvTranspose"):  # every conv reads DQ'd int8 weights
            producer = next(p for p in half.graph.node if node.input[1] in p.output)
            assert producer.op_type == "DequantizeLinear"
    # same values as the FP32-glue graph up to float16 rounding (outputs in [0, 1]-ish, 2^-11 steps)
    x = np.random.default_rng(0).random((1, 3, 12, 12), dtype=np.float32)
    ref, got = _run(fp32_glue, x), _run(half, x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert np.abs(got - ref).max() < 0.03 and np.abs(got - ref).mean() < 2e-3


def test_plugin_nodes_take_fp16_and_keep_fp32_params(net_and_graph) -> None:
    net, graph = net_and_graph
    half = lower("drq-plugin", graph, make_recipe(net, "b-bit"), LoweringOptions(glue="fp16"))
    types = _types(half)
    quantize = [n for n in half.graph.node if n.op_type == "DualRegionQuantize"]
    dequant = [n for n in half.graph.node if n.op_type == "DualRegionDequant"]
    assert quantize and len(quantize) == len(dequant)
    for node in quantize:
        assert types[node.input[0]] == TensorProto.FLOAT16 and types[node.input[1]] == TensorProto.FLOAT
    for node in dequant:
        assert {a.name: a.i for a in node.attribute}["out_dtype"] == TensorProto.FLOAT16
        assert types[node.output[0]] == TensorProto.FLOAT16
    # the local function bodies were written again for the raised opset (ONNX requires it)
    assert {f.name for f in half.functions} == {"DualRegionQuantize", "DualRegionDequant"}
    assert all(op.version == GLUE_OPSET for f in half.functions for op in f.opset_import if op.domain == "")


def test_fp16_io_has_no_float_cast_at_all(net_and_graph) -> None:
    net, graph = net_and_graph
    half = lower("qdq", graph, make_recipe(net, "uniform"), LoweringOptions(glue="fp16", io_dtype="fp16"))
    float_types = (TensorProto.FLOAT, TensorProto.FLOAT16)
    assert not [n.name for n in half.graph.node if n.op_type == "Cast" and n.attribute[0].i in float_types]
    types = _types(half)
    assert types["lr"] == types["sr"] == TensorProto.FLOAT16
    assert float32_compute_nodes(half) == []
    x = np.random.default_rng(1).random((1, 3, 8, 8)).astype(np.float16)
    assert _run(half, x).dtype == np.float16


def test_refused_where_it_does_not_apply(net_and_graph) -> None:
    net, graph = net_and_graph
    with pytest.raises(ExportError, match="ort-cpu keeps fp32 glue"):
        LoweringOptions(glue="fp16", target="ort-cpu")
    with pytest.raises(ExportError, match="fakequant has no quantized convs"):
        lower("fakequant", graph, make_recipe(net, "paper"), LoweringOptions(glue="fp16"))
    with pytest.raises(ExportError, match="glue: must be fp32 or fp16"):
        LoweringOptions(glue="bf16")  # type: ignore[arg-type]


def test_a_scale_float16_cannot_hold_is_refused(net_and_graph) -> None:
    net, graph = net_and_graph
    model = lower("qdq", graph, make_recipe(net, "uniform"))
    dq = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == dq.input[1]:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.float32(1e-9), tensor.name))
    with pytest.raises(ExportError, match=f"scale '{dq.input[1]}'.*does not fit float16"):
        apply_fp16_glue(model)


# ---------------------------------------------------------------------------------------------------
# Quality on Set5 (IMDN x4, recipes from `drq quantize`, graphs from `drq export`, onnxruntime CPU)

SET5_CASES = [  # (quantize options, lowering, tolerance in dB against the FP32-glue graph)
    # measured: -0.0136 dB. onnxruntime computes DQ(int8 weights) * fp16 scale in float16, so each
    # weight is rounded to float16 (alone: -0.0064 dB); TensorRT's INT8 conv keeps the int8 codes and
    # applies the scales to the int32 sums, so this is a bound for onnxruntime, not for the engine.
    (["--method", "minmax"], "qdq", 0.02),
    (["--method", "drq", "--budget", "split"], "drq-split", 0.01),  # measured: +0.0011 dB
]


@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize("method,lowering,tolerance", SET5_CASES, ids=["qdq-minmax", "drq-split"])
def test_fp16_glue_keeps_set5_quality(shared_dir: Path, tmp_path: Path, method, lowering, tolerance) -> None:
    from drq.cli import main

    weights = shared_dir / "sr_weights" / "imdn_x4.pth"
    recipe = tmp_path / "r.json"
    common = ["--arch", "imdn", "--weights", str(weights), "--scale", "4", "--w-bits", "8", "--a-bits", "8"]
    calib = ["--calib", str(shared_dir / "sr_calib" / "bsd200"), "--images", "8", "--threads", "1"]
    assert main(["quantize", *common, *calib, *method, "-o", str(recipe)]) == 0
    psnr = {}
    for glue in ("fp32", "fp16"):
        onnx_path = tmp_path / f"{glue}.onnx"
        assert main(["export", "--recipe", str(recipe), "--glue", glue, "-o", str(onnx_path)]) == 0
        report = tmp_path / f"{glue}.json"
        data = str(shared_dir / "sr_bench" / "Set5" / "x4")
        args = ["eval", "--onnx", str(onnx_path), "--data", data, "--threads", "2", "--quiet"]
        assert main([*args, "--json", str(report)]) == 0
        psnr[glue] = float(json.loads(report.read_text())["results"][0]["psnr"])
    half = onnx.load(str(tmp_path / "fp16.onnx"))
    assert metadata(half)["drq.lowering"] == lowering and float32_compute_nodes(half) == []
    assert 31.5 < psnr["fp32"] < 32.3  # a working W8A8 IMDN x4 (FP32: 32.21 dB)
    assert abs(psnr["fp16"] - psnr["fp32"]) < tolerance, psnr


def test_the_mixed_plan_takes_the_glue_too(net_and_graph) -> None:
    """int8-plan's `mixed` lowering (int8, shifted int8, split and fp16 layers in one graph) gets the
    same pass: the pass knows no lowering, only the graph."""
    from drq.recipe import UniformAct, f32
    from tests.engine_builder.test_lowering_mixed import PLAN, _mixed

    net, graph = net_and_graph
    shifted = {"head": UniformAct(bits=8, scale=f32(1 / 255), zero_point=-128)}
    recipe = _mixed(net, PLAN, shifted)
    fp32_glue, half = (
        lower("mixed", graph, recipe),
        lower("mixed", graph, recipe, LoweringOptions(glue="fp16")),
    )
    assert float32_compute_nodes(fp32_glue) and float32_compute_nodes(half) == []
    x = np.random.default_rng(2).random((1, 3, 12, 12), dtype=np.float32)
    ref, got = _run(fp32_glue, x), _run(half, x)
    assert np.abs(got - ref).max() < 0.03 and np.abs(got - ref).mean() < 2e-3


def test_export_defaults_to_fp16_glue_for_tensorrt_targets(tmp_path: Path, capsys) -> None:
    from drq.cli import main
    from engine_builder.export_command import _options, _parser

    def glue(*extra: str, lowering: str = "qdq") -> str:
        return _options(_parser().parse_args(["--recipe", "r.json", "-o", "x.onnx", *extra]), lowering).glue

    assert glue() == "fp16" and glue(lowering="drq-split") == "fp16" and glue(lowering="mixed") == "fp16"
    assert glue(lowering="fakequant") == glue(lowering="fp16") == glue(lowering="fp32") == "fp32"
    assert glue("--target", "ort-cpu") == "fp32" and glue("--glue", "fp32") == "fp32"
    code = main(["export", "--recipe", "r.json", "--target", "ort-cpu", "--glue", "fp16", "-o", "x.onnx"])
    assert code == 2
    assert capsys.readouterr().err == (
        "drq export: glue fp16: for --target tensorrt only; --target ort-cpu keeps fp32 glue\n"
    )


def test_plugin_graph_with_fp16_glue_still_maps_to_the_plugins(tmp_path: Path, monkeypatch) -> None:
    """The FP16-glue drq-plugin graph parses to the two plugin layers (not the inlined bodies) and builds,
    so the plugin takes float16 x and gives float16 out itself, with no Cast around it."""
    from engine_builder.build import BuildConfig, build_engine
    from plugins import trt_registration
    from tests.engine_builder.test_plugin_build import PLUGIN_LAYERS, SHAPES, install, plugin_model

    monkeypatch.setattr(trt_registration, "_REGISTERED", {})
    half = apply_fp16_glue(plugin_model())
    path = tmp_path / "p16.onnx"
    onnx.save(half, path)
    install(monkeypatch, "10.13.0")  # fake CUDA, TensorRT 10.13 and tensorrt.plugin
    trt = sys.modules["tensorrt"]
    build_engine(BuildConfig(onnx=path, output=tmp_path / "p16.plan", plugins="drq", **SHAPES))
    layers = trt.STATE.named("layers")[0].args[0]
    assert [entry for entry in layers if entry[0] == "plugin"] == PLUGIN_LAYERS
    assert not [
        n
        for n in half.graph.node
        if n.op_type == "Cast" and n.input[0] not in ("lr",) and n.output[0] != "sr"
    ]
