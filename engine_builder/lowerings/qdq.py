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

from drq.recipe import Recipe, UniformAct
from engine_builder.errors import ExportError
from engine_builder.lowerings.act_graphs import qdq_pair, qlinear_conv
from engine_builder.lowerings.common import (
    LoweringOptions,
    add_weight_dq,
    cpu_output_range,
    recipe_nodes,
    start,
    weight_codes,
)
from engine_builder.lowerings.graph import finalize


def check_int8_recipe(recipe: Recipe | None, lowering: str) -> Recipe:
    """The recipe, if every layer is 8-bit signed symmetric uniform on its input (and <= 8-bit weights).

    Raises:
        ExportError: naming the first layer that needs another lowering.
    """
    if recipe is None:
        raise ExportError(f"{lowering}: needs a recipe (use --lowering fp32 or fp16 for a float model)")
    for name, layer in recipe.layers.items():
        act = layer.act
        if recipe.budget == "fp8":
            raise ExportError(
                f"recipe layer {name!r}: {lowering} needs INT8 activations, the recipe is fp8; "
                "use --lowering fp8"
            )
        if not isinstance(act, UniformAct):
            raise ExportError(
                f"recipe layer {name!r}: {lowering} needs uniform activations, the recipe has the "
                f"{act.budget!r} dual-region budget; use --lowering fakequant (or drq-split / "
                "drq-plugin for their budgets)"
            )
        if act.bits != 8 or not act.symmetric:
            raise ExportError(
                f"recipe layer {name!r}: {lowering} needs 8-bit signed symmetric activations, got "
                f"{act.bits}-bit {'signed' if act.signed else 'unsigned'} zero point "
                f"{act.zero_point}; use --lowering fakequant"
            )
    return recipe


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    """Insert Q/DQ for every recipe layer (see module docstring).

    Raises:
        ExportError: the recipe is not uniform INT8 (use `fakequant`), or a layer is missing.
    """
    recipe = check_int8_recipe(recipe, "qdq")
    model, ed = start(float_model, "qdq", recipe)
    for name, layer, node_name in recipe_nodes(model, recipe, "qdq"):
        node = ed.node(node_name)
        act = layer.act
        assert isinstance(act, UniformAct)
        out_range = cpu_output_range(options, node)
        if out_range is not None:
            codes, w_scale, w_axis = weight_codes(ed.array(node.input[1]), layer.weight, name)
            out = qlinear_conv(
                ed, node, [(node.input[0], act.scale, codes)], w_scale, w_axis, out_range, name
            )
            ed.replace_output(node, out)
            continue
        node.input[0] = qdq_pair(ed, node.input[0], act.scale, node, f"{name}.input")
        node.input[1] = add_weight_dq(ed, node, ed.array(node.input[1]), layer.weight, name)
    ed.commit()
    return finalize(model)
