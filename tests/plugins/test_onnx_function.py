"""The ONNX local functions run in onnxruntime equal the NumPy reference bit for bit; the nodes carry
what TensorRT's parser needs to pick the plugin."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from plugins.errors import PluginError
from plugins.onnx_function import (
    attach_functions,
    functions,
    make_dequant_node,
    make_quantize_node,
    params_initializer,
    strip_functions,
)
from plugins.reference import dequantize, quantize
from plugins.spec import NUM_PARAMS
from tests.plugins.edge_cases import all_codes, float_inputs, params_sets

ort = pytest.importorskip("onnxruntime")

NP = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16}


def _round_trip_model(in_type: int, out_type: int, opset: int = 17) -> onnx.ModelProto:
    """x -> DualRegionQuantize -> codes -> DualRegionDequant -> y (codes is a graph output too)."""
    nodes = [make_quantize_node("x", "params", "codes"), make_dequant_node("codes", "params", "y", out_type)]
    graph = helper.make_graph(
        nodes,
        "round_trip",
        [
            helper.make_tensor_value_info("x", in_type, ["n"]),
            helper.make_tensor_value_info("params", TensorProto.FLOAT, [NUM_PARAMS]),
        ],
        [
            helper.make_tensor_value_info("y", out_type, ["n"]),
            helper.make_tensor_value_info("codes", TensorProto.INT8, ["n"]),
        ],
    )
    return attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))


def _dequant_model(out_type: int) -> onnx.ModelProto:
    graph = helper.make_graph(
        [make_dequant_node("codes", "params", "y", out_type)],
        "dequant",
        [
            helper.make_tensor_value_info("codes", TensorProto.INT8, [2, "n"]),
            helper.make_tensor_value_info("params", TensorProto.FLOAT, [NUM_PARAMS]),
        ],
        [helper.make_tensor_value_info("y", out_type, [2, "n"])],
    )
    return attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32)


@pytest.mark.parametrize("in_type", [TensorProto.FLOAT, TensorProto.FLOAT16])
@pytest.mark.parametrize("out_type", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_round_trip_model_is_bit_exact(in_type: int, out_type: int) -> None:
    model = _round_trip_model(in_type, out_type)
    onnx.checker.check_model(model, full_check=True)
    session = _session(model)
    for name, params in params_sets().items():
        with np.errstate(over="ignore"):
            x = float_inputs(params).astype(NP[in_type])
        assert np.isnan(x).any() and np.isposinf(x).any() and np.isneginf(x).any()
        y, codes = session.run(None, {"x": x, "params": params})
        want_codes = quantize(x, params)
        assert np.array_equal(codes, want_codes), name
        want_y = dequantize(want_codes, params, NP[out_type])
        assert y.dtype == NP[out_type]
        assert np.array_equal(_bits(y), _bits(want_y)), name


@pytest.mark.parametrize("out_type", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_dequant_of_every_code_is_bit_exact(out_type: int) -> None:
    session = _session(_dequant_model(out_type))
    codes = np.stack([all_codes(), all_codes()[::-1]])
    for name, params in params_sets().items():
        (y,) = session.run(None, {"codes": codes, "params": params})
        assert np.array_equal(_bits(y), _bits(dequantize(codes, params, NP[out_type]))), name


def test_shape_inference_gives_types_and_shapes() -> None:
    inferred = onnx.shape_inference.infer_shapes(
        _round_trip_model(TensorProto.FLOAT16, TensorProto.FLOAT16), strict_mode=True, check_type=True
    )
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.output}
    assert types == {"y": TensorProto.FLOAT16, "codes": TensorProto.INT8}


def test_nodes_carry_plugin_attributes() -> None:
    q = make_quantize_node("x", "p", "c")
    d = make_dequant_node("c", "p", "y", TensorProto.FLOAT16)
    assert (q.op_type, q.domain) == ("DualRegionQuantize", "drq")
    assert (d.op_type, d.domain) == ("DualRegionDequant", "drq")
    assert {a.name: helper.get_attribute_value(a) for a in q.attribute} == {
        "plugin_namespace": b"drq",
        "plugin_version": b"1",
    }
    assert {a.name: helper.get_attribute_value(a) for a in d.attribute} == {
        "plugin_namespace": b"drq",
        "plugin_version": b"1",
        "out_dtype": TensorProto.FLOAT16,
    }


def test_strip_functions_keeps_plugin_nodes_only() -> None:
    model = _round_trip_model(TensorProto.FLOAT, TensorProto.FLOAT)
    stripped = strip_functions(model)
    assert len(model.functions) == 2  # the input is not modified
    assert len(stripped.functions) == 0
    assert [(n.op_type, n.domain) for n in stripped.graph.node] == [
        ("DualRegionQuantize", "drq"),
        ("DualRegionDequant", "drq"),
    ]
    for node in stripped.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["plugin_namespace"] == b"drq" and attrs["plugin_version"] == b"1"
    assert {(o.domain, o.version) for o in stripped.opset_import} == {("", 17), ("drq", 1)}
    onnx.checker.check_model(stripped)  # structurally valid; only the bodies are gone
    with pytest.raises(Exception, match="DualRegionQuantize"):
        _session(stripped)  # onnxruntime has nothing to run it with any more


def test_attach_functions_is_idempotent_and_follows_model_opset() -> None:
    model = _round_trip_model(TensorProto.FLOAT, TensorProto.FLOAT, opset=19)
    again = attach_functions(model)
    assert len(again.functions) == 2
    assert sum(o.domain == "drq" for o in again.opset_import) == 1
    assert all(fn.opset_import[0].version == 19 for fn in again.functions)
    onnx.checker.check_model(again, full_check=True)


def test_function_bodies_use_standard_ops_only() -> None:
    for fn in functions():
        assert all(node.domain in ("", "ai.onnx") for node in fn.node)
        assert "Round" in {node.op_type for node in fn.node} or fn.name == "DualRegionDequant"


def test_params_initializer_feeds_the_nodes() -> None:
    """A model with params as an initializer (how lowerings emit it) gives the reference codes."""
    params = params_sets()["b8_two_tails"]
    graph = helper.make_graph(
        [make_quantize_node("x", "act_params", "codes")],
        "init",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("codes", TensorProto.INT8, ["n"])],
        initializer=[params_initializer("act_params", params)],
    )
    model = attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    x = float_inputs(params, n_random=500)
    (codes,) = _session(model).run(None, {"x": x})
    assert np.array_equal(codes, quantize(x, params))
    with pytest.raises(PluginError, match="params: breakpoint bp must be > 0"):
        params_initializer("p", np.array([0, 1, 1, 1, 63, 63, 63], np.float32))


def test_rejects_bad_arguments() -> None:
    with pytest.raises(PluginError, match="need default-domain opset >= 17, got 13"):
        functions(13)
    with pytest.raises(PluginError, match=r"DualRegionDequant: out_dtype must be .*got 7"):
        make_dequant_node("c", "p", "y", TensorProto.INT64)


@pytest.mark.rtx
def test_tensorrt_rtx_parses_functions_and_needs_plugin_without_them() -> None:
    """TensorRT-RTX (CPU build) inlines the function bodies into an engine; the stripped model can only
    use the plugin, and without it the parse fails naming the missing plugin."""
    trt = pytest.importorskip("tensorrt_rtx")
    params = params_sets()["b8_two_tails"]
    graph = helper.make_graph(
        [make_quantize_node("x", "params", "codes"), make_dequant_node("codes", "params", "y")],
        "rtx",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])],
        initializer=[params_initializer("params", params)],
    )
    model = attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    logger = trt.Logger(trt.Logger.ERROR)

    def parse(m: onnx.ModelProto) -> tuple[bool, list[str], object]:
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        ok = parser.parse(m.SerializeToString())
        return ok, [parser.get_error(i).desc() for i in range(parser.num_errors)], (builder, network)

    ok, errors, (builder, network) = parse(model)
    assert ok, errors
    assert builder.build_serialized_network(network, builder.create_builder_config()) is not None
    ok, errors, _ = parse(strip_functions(model))
    assert not ok and any("Plugin not found" in e for e in errors)
