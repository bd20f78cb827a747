"""The fp8 lowering: float8e4m3fn Q/DQ that onnxruntime's CPU kernels run exactly as the torch quantizer,
its graph layout, the refusals between INT8 and FP8 lowerings, and a TensorRT-RTX build."""

from __future__ import annotations

import copy

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.quantizers import apply_recipe
from calib.quantizers.fp8 import FP8WeightQuantizer, fake_e4m3
from drq.recipe import ModelIdentity, Recipe, WeightQuant
from engine_builder.errors import ExportError
from engine_builder.export.torch_export import export_float_onnx
from engine_builder.lowerings.fp8 import FP8_OPSET, fp8_weight_codes
from engine_builder.lowerings.graph import opset_of
from engine_builder.lowerings.registry import default_lowering, lower
from serve.runtime.ort import FP8_UNSAFE_REWRITES, OrtRunner
from tests.calib.nets import TinyShuffle, TinyTranspose
from tests.engine_builder.rtx_engine import build_rtx_engine

ort = pytest.importorskip("onnxruntime")


def _recipe(net: torch.nn.Module, method: str = "fp8", all_layers: bool = True) -> Recipe:
    crops = [np.random.default_rng(i).random((3, 16, 16), dtype=np.float32) * 1.5 for i in range(4)]
    budget = "fp8" if method == "fp8" else "uniform"
    config = QuantizeConfig(method=method, w_bits=8, a_bits=8, budget=budget, all_layers=all_layers, crop=16)
    recipe, _ = quantize(copy.deepcopy(net), ModelIdentity("tiny", 2, ""), make_batches(crops, 2), config)
    return recipe


def _session(model: onnx.ModelProto, level: str = "ORT_ENABLE_ALL", disabled=()) -> object:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return ort.InferenceSession(
        model.SerializeToString(),
        opts,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(disabled),
    )


def test_onnxruntime_float8_quantize_dequantize_equals_the_torch_quantizer_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    scale = np.float32(0.0213)
    x = np.concatenate(
        [
            (rng.standard_normal(20000) * rng.choice([1e-3, 0.1, 3.0, 30.0], 20000)).astype(np.float32),
            np.array([0.0, -0.0, 9.54, -9.54, 1e6, -1e6, 448 * 0.0213, 2.0**-9 * 0.0213], np.float32),
        ]
    )
    zero = numpy_helper.from_array(np.zeros((), dtype=ml_dtypes.float8_e4m3fn), "z")
    graph = helper.make_graph(
        [
            helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
        ],
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x.size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [x.size])],
        [numpy_helper.from_array(np.array(scale), "s"), zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", FP8_OPSET)])
    assert zero.data_type == TensorProto.FLOAT8E4M3FN
    got = _session(model).run(None, {"x": x})[0]
    expected = fake_e4m3(torch.from_numpy(x), torch.tensor(scale)).numpy()
    np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


def test_offline_weight_codes_dequantize_to_the_torch_weight_quantizer_bit_for_bit() -> None:
    weight = torch.randn(6, 4, 3, 3, generator=torch.Generator().manual_seed(1)) * torch.logspace(
        -3, 1, 6
    ).reshape(-1, 1, 1, 1)
    quantizer = FP8WeightQuantizer.from_weight(weight, axis=0)
    entry: WeightQuant = quantizer.to_recipe()
    codes, scale, axis = fp8_weight_codes(weight.numpy(), entry, "w")
    assert codes.dtype == ml_dtypes.float8_e4m3fn and axis == 0
    dequantized = (codes.astype(np.float32) * scale.reshape(-1, 1, 1, 1)).astype(np.float32)
    np.testing.assert_array_equal(
        dequantized.view(np.int32), quantizer(weight).detach().numpy().view(np.int32)
    )


@pytest.mark.parametrize("net_cls", [TinyShuffle, TinyTranspose])
def test_fp8_graph_layout(net_cls) -> None:
    net = net_cls().eval()
    recipe = _recipe(net)
    model = lower("fp8", export_float_onnx(net, scale=2), recipe)
    assert opset_of(model) == FP8_OPSET
    inits = {t.name: t for t in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert len(convs) == len(recipe.layers)
    producer = {o: n for n in model.graph.node for o in n.output}
    for conv in convs:
        act_dq, weight_dq = producer[conv.input[0]], producer[conv.input[1]]
        assert act_dq.op_type == weight_dq.op_type == "DequantizeLinear"
        assert producer[act_dq.input[0]].op_type == "QuantizeLinear"
        assert inits[act_dq.input[2]].data_type == TensorProto.FLOAT8E4M3FN
        assert inits[weight_dq.input[0]].data_type == TensorProto.FLOAT8E4M3FN
        axis = next(a.i for a in weight_dq.attribute if a.name == "axis")
        assert axis == (1 if conv.op_type == "ConvTranspose" else 0)


@pytest.mark.parametrize(
    "net_cls,all_layers", [(TinyShuffle, False), (TinyShuffle, True), (TinyTranspose, True)]
)
def test_fp8_graph_in_onnxruntime_matches_the_torch_simulation(tmp_path, net_cls, all_layers) -> None:
    net = net_cls().eval()
    recipe = _recipe(net, all_layers=all_layers)
    model = lower("fp8", export_float_onnx(net, scale=2), recipe)
    path = tmp_path / "fp8.onnx"
    onnx.save(model, path)
    simulated = copy.deepcopy(net)
    apply_recipe(simulated, recipe)
    x = np.random.default_rng(5).random((1, 3, 20, 24), dtype=np.float32)
    with torch.no_grad():
        expected = simulated.eval()(torch.from_numpy(x)).numpy()
    unoptimized = _session(model, "ORT_DISABLE_ALL").run(None, {"lr": x})[0]
    np.testing.assert_allclose(unoptimized, expected, atol=1e-6)
    # Optimized, onnxruntime picks other conv kernels: their float rounding moves a few values across an
    # E4M3 rounding boundary (a 1/16 step), so agreement is close but not exact. The Relu-dropping
    # rewrite that OrtRunner disables for fp8 graphs moved every output (measured max 0.06-0.13).
    got = OrtRunner(path, threads=1).run(x)
    assert np.abs(got - unoptimized).max() < 5e-3 and np.abs(got - unoptimized).mean() < 1e-4


def test_onnxruntime_keeps_every_relu_of_an_fp8_graph_without_the_integer_rewrites(tmp_path) -> None:
    net = TinyTranspose().eval()
    model = lower("fp8", export_float_onnx(net, scale=2), _recipe(net))
    relus = sum(n.op_type == "Relu" for n in model.graph.node)
    assert relus == 1
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(
        model.SerializeToString(),
        opts,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(FP8_UNSAFE_REWRITES),
    )
    optimized = onnx.load(str(tmp_path / "optimized.onnx"))
    # onnxruntime may fold the Relu into its conv (FusedConv, activation "Relu"): it still runs.
    kept = sum(
        n.op_type == "Relu" or any(a.name == "activation" and a.s == b"Relu" for a in n.attribute)
        for n in optimized.graph.node
    )
    assert kept == relus


def test_lowerings_refuse_the_other_precision() -> None:
    net = TinyShuffle().eval()
    graph = export_float_onnx(net, scale=2)
    fp8_recipe, int8_recipe = _recipe(net), _recipe(net, "minmax")
    assert default_lowering(fp8_recipe) == "fp8" and default_lowering(int8_recipe) == "qdq"
    with pytest.raises(ExportError, match="the fp8 lowering needs an fp8 recipe .* has the 'uniform' budget"):
        lower("fp8", graph, int8_recipe)
    with pytest.raises(ExportError, match="fp8: needs a recipe"):
        lower("fp8", graph, None)
    with pytest.raises(
        ExportError, match="qdq needs INT8 activations, the recipe is fp8; use --lowering fp8"
    ):
        lower("qdq", graph, fp8_recipe)
    with pytest.raises(ExportError, match="fakequant does not emulate fp8 recipes; use --lowering fp8"):
        lower("fakequant", graph, fp8_recipe)
    for other in ("drq-split", "drq-plugin"):
        with pytest.raises(ExportError, match="this recipe has 'fp8'; use --lowering fp8$"):
            lower(other, graph, fp8_recipe)


@pytest.mark.rtx
def test_tensorrt_rtx_builds_the_fp8_graph_for_ada_and_blackwell() -> None:
    net = TinyShuffle(nf=16).eval()
    model = lower("fp8", export_float_onnx(net, scale=2), _recipe(net))
    # FP8 needs compute capability 8.9+ (TensorRT-RTX "Working with Quantized Types"); an sm80 target is
    # refused by the builder ("the model contains HW-specific datatypes: fp8_e4m3", measured with 1.7.1).
    assert build_rtx_engine(model, ("SM89", "SM120")) > 0


def test_calibration_cache_refuses_an_fp8_recipe() -> None:
    from engine_builder.calib_cache import CalibCacheError, cache_from_recipe

    recipe = _recipe(TinyShuffle().eval())
    with pytest.raises(CalibCacheError, match="a TensorRT calibration cache is for INT8; an fp8 recipe goes"):
        cache_from_recipe(recipe, {name: f"{name}_in" for name in recipe.layers})
