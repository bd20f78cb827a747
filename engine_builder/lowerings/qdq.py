"""`qdq`: explicit INT8 for TensorRT: QuantizeLinear/DequantizeLinear on every recipe conv input.

Placement (TensorRT's explicit-quantization rules, "Working with Quantized Types" in the TensorRT
developer guide): activations get a per-tensor Q/DQ pair (int8, zero point 0) on the conv input only;
weights are int8 initializers (quantized offline, symmetric narrow range) behind a DequantizeLinear
along the output-channel axis (0 for Conv/Gemm, 1 for ConvTranspose, as the recipe records); biases,
conv outputs, residual Adds and DepthToSpace stay float, so TensorRT fuses DQ -> Conv (+ bias, + Add,
+ activation) into one INT8 kernel and never re-quantizes a tensor the recipe did not.

`target="ort-cpu"` writes Conv layers whose output range is known (`LoweringOptions.output_ranges`) in
the QDQ form onnxruntime fuses into QLinearConv on x86 (`act_graphs.qlinear_conv`): uint8 activations,
int32 bias, a Q/DQ on the output. Never used for TensorRT.
"""

from __future__ import annotations

import onnx

from drq.recipe import LayerRecipe, Recipe, UniformAct
from engine_builder.lowerings.act_graphs import qdq_pair, qlinear_conv
from engine_builder.lowerings.common import (
    LoweringOptions,
    add_weight_dq,
    check_recipe,
    cpu_output_range,
    recipe_nodes,
    start,
    weight_codes,
)
from engine_builder.lowerings.graph import GraphEditor, finalize


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    """Insert Q/DQ for every recipe layer (see module docstring).

    Raises:
        ExportError: the recipe is not uniform INT8 (use `fakequant`), or a layer is missing.
    """
    recipe = check_recipe(recipe, "qdq", "uniform", int8_layers=True)
    model, ed = start(float_model, "qdq", recipe)
    for name, layer, node_name in recipe_nodes(model, recipe, "qdq"):
        lower_layer(ed, ed.node(node_name), name, layer, options)
    ed.commit()
    return finalize(model)


def lower_layer(
    ed: GraphEditor, node: onnx.NodeProto, name: str, layer: LayerRecipe, options: LoweringOptions
) -> None:
    """One symmetric INT8 conv input: Q/DQ (TensorRT) or the QLinearConv pattern (ort-cpu)."""
    act = layer.act
    assert isinstance(act, UniformAct)
    out_range = cpu_output_range(options, node)
    if out_range is not None:
        lower_qlinear(ed, node, name, layer, options, out_range)
        return
    node.input[0] = qdq_pair(ed, node.input[0], act.scale, node, f"{name}.input")
    node.input[1] = add_weight_dq(ed, node, ed.array(node.input[1]), layer.weight, name)


def lower_qlinear(
    ed: GraphEditor,
    node: onnx.NodeProto,
    name: str,
    layer: LayerRecipe,
    options: LoweringOptions,
    out_range: tuple[float, float],
) -> None:
    """A uniform INT8 conv input as the QLinearConv pattern (ort-cpu); its zero point (a shifted grid
    for inputs bounded below) becomes the input's zero point."""
    act = layer.act
    assert isinstance(act, UniformAct)
    codes, w_scale, w_axis = weight_codes(ed.array(node.input[1]), layer.weight, name)
    out = qlinear_conv(
        ed,
        node,
        [(node.input[0], act.scale, codes)],
        w_scale,
        w_axis,
        out_range,
        name,
        input_zero_point=act.zero_point,
        weight_type=options.ort_weights,
    )
    ed.replace_output(node, out)
