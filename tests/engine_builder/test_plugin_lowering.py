"""drq-plugin: int8 codes between DualRegionQuantize and DualRegionDequant, local functions attached."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper

from drq.grids import bbit_grid
from engine_builder.errors import ExportError
from engine_builder.export.torch_export import export_float_onnx
from engine_builder.lowerings.graph import layer_map
from engine_builder.lowerings.registry import lower
from plugins.onnx_function import strip_functions
from plugins.spec import DEQUANT_OP, NAMESPACE, QUANTIZE_OP
from tests.engine_builder.test_export import LAYERS, TinySR, make_recipe, run_ort

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def setup():
    net = TinySR().eval()
    return net, export_float_onnx(net, scale=2), make_recipe(net, "b-bit")


def test_plugin_nodes_carry_int8_codes_before_each_conv(setup) -> None:
    net, float_model, recipe = setup
    model = lower("drq-plugin", float_model, recipe)
    onnx.checker.check_model(model, full_check=True)
    assert {(f.domain, f.name) for f in model.functions} == {
        (NAMESPACE, QUANTIZE_OP),
        (NAMESPACE, DEQUANT_OP),
    }
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops[QUANTIZE_OP] == ops[DEQUANT_OP] == len(LAYERS)
    assert ops["QuantizeLinear"] == 0 and ops["DequantizeLinear"] == len(LAYERS)  # weights only
    prod = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    for name, node_name in layer_map(model).items():
        conv = next(n for n in model.graph.node if n.name == node_name)
        deq = prod[conv.input[0]]
        assert deq.op_type == DEQUANT_OP and deq.domain == NAMESPACE
        quant = prod[deq.input[0]]
        assert quant.op_type == QUANTIZE_OP and types[deq.input[0]] == TensorProto.INT8
        params = numpy_helper.to_array(inits[quant.input[1]])
        np.testing.assert_array_equal(params, bbit_grid(recipe.layers[name].act).params())
        assert quant.input[1] == deq.input[1]


def test_plugin_lowering_equals_fakequant_in_onnxruntime(setup) -> None:
    net, float_model, recipe = setup
    x = np.random.default_rng(2).random((1, 3, 17, 13), dtype=np.float32)
    plugin = run_ort(lower("drq-plugin", float_model, recipe), x)
    fake = run_ort(lower("fakequant", float_model, recipe), x)
    # identical activation codes; only the weights' DQ vs precomputed float path may differ by rounding
    np.testing.assert_allclose(plugin, fake, atol=1e-5)
    assert np.abs(plugin - run_ort(float_model, x)).max() > 1e-4


def test_stripped_plugin_model_keeps_nodes(setup) -> None:
    _, float_model, recipe = setup
    stripped = strip_functions(lower("drq-plugin", float_model, recipe))
    assert not stripped.functions and any(n.op_type == QUANTIZE_OP for n in stripped.graph.node)


def test_plugin_lowering_rejects_other_budgets(setup) -> None:
    net, float_model, _ = setup
    with pytest.raises(
        ExportError, match=r"drq-plugin lowers the 'b-bit' budget.*'split'; use --lowering drq-split"
    ):
        lower("drq-plugin", float_model, make_recipe(net, "split"))


def test_plugin_bench_traffic_accounting(setup) -> None:
    """Bytes per conv input: fp16 4N, plugin fused 2N + 28 (params), plugin standalone 10N + 56 (fp16 x
    written and read, int8 codes written and read, fp16 x_hat written and read, params read by both
    kernels), split 2N + 2N + 8N (float32 residual)."""
    from engine_builder.plugin_bench import conv_input_shapes, derived_recipes, traffic

    net, float_model, recipe = setup
    shapes = conv_input_shapes(float_model, 10, 6)
    assert shapes["head"] == (3, 10, 6) and shapes["tail"] == (3, 20, 12)  # after the x2 pixel shuffle
    rows = {r.layer: r for r in traffic(recipe, shapes)}
    n = 8 * 10 * 6
    row = rows["body.0.c1"]
    assert (row.fp16, row.plugin, row.split) == (4 * n, 2 * n + 28, 12 * n)  # float32[7] params
    assert row.plugin_standalone == 10 * n + 56  # 2.5x fp16: the plugin kernels cost traffic, not save it
    k = len(recipe.layers["body.0.c1"].act.outlier_channels)
    assert (
        0 < k <= 8 and row.split_outlier_channels_only == 2 * n + (2 + 8) * k * 10 * 6
    )  # dense + k channels
    uniform, split = derived_recipes(recipe)
    act = recipe.layers["head"].act
    assert uniform.layers["head"].act.scale == pytest.approx(max(act.upper, -act.lower) / 127, rel=1e-6)
    assert split.budget == "split" and split.layers["head"].act.breakpoint == act.breakpoint
