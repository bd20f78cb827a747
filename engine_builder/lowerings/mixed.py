"""`mixed`: a recipe's per-layer plan (`calib.plan`): each conv as INT8, dual-region split, or float.

Per recipe layer, by `recipe.plan[name]`:

* `int8`, zero point 0: the `qdq` form (`qdq.lower_layer`);
* `int8` with a zero point z (a shifted grid x_hat = s (q - z) for inputs bounded below): TensorRT
  takes zero point 0 only, so the shift c = -z s is folded into the conv, exactly, zero padding
  included::

      conv(x_hat) = Conv_nopad(DQ(Q(Pad0(x) - c, s)), W) + (b + c * sum(W over ci, kh, kw))

  The explicit Pad puts x = 0 at the border before the shift, so the border codes are Q(-c / s) = z and
  dequantize to exactly -c; the bias term adds back the c every window position saw. (Shifting after a
  zero-padding conv would pad x - c with 0, i.e. x with c: wrong at the border.) Numerically the codes
  are those of ONNX QuantizeLinear with zero point z up to the float32 rounding of x - c. For `ort-cpu`
  no fold is needed: QLinearConv takes the zero point (uint8 128 + z) and pads with it;
* `split`: the `drq-split` branches (`drq_split.lower_layer`);
* `fp16`: the float conv stays as it is (FP16 once the FP16-glue pass or an FP16 builder runs it).
"""

from __future__ import annotations

import numpy as np
import onnx

from drq.recipe import LayerRecipe, Recipe, UniformAct
from engine_builder.errors import ExportError
from engine_builder.lowerings import drq_split, qdq
from engine_builder.lowerings.act_graphs import qdq_pair
from engine_builder.lowerings.common import (
    LoweringOptions,
    add_weight_dq,
    cpu_output_range,
    fake_quant_weight,
    recipe_nodes,
    start,
)
from engine_builder.lowerings.graph import GraphEditor, finalize

_F32 = np.float32


def check_mixed_recipe(recipe: Recipe | None) -> Recipe:
    """Raises ExportError unless the recipe carries a mixed plan."""
    if recipe is None or recipe.budget != "mixed":
        have = "no recipe" if recipe is None else f"the {recipe.budget!r} budget"
        raise ExportError(
            f"mixed: lowers recipes of the 'mixed' budget (drq quantize --budget mixed), got {have}"
        )
    return recipe


def _attr(node: onnx.NodeProto, name: str, default: object) -> object:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def shift_fold_bias(weight_hat: np.ndarray, bias: np.ndarray | None, shift: np.float32) -> np.ndarray:
    """b + c * sum(W_hat[co]) per output channel (float64 sum, one rounding to float32)."""
    total = weight_hat.astype(np.float64).reshape(weight_hat.shape[0], -1).sum(axis=1)
    base = np.zeros(weight_hat.shape[0]) if bias is None else bias.astype(np.float64)
    return (base + np.float64(shift) * total).astype(_F32)


def _lower_shifted(ed: GraphEditor, node: onnx.NodeProto, name: str, layer: LayerRecipe) -> None:
    """TensorRT form of a shifted int8 conv input (module docstring): Pad0 -> Sub c -> Q/DQ -> Conv."""
    act = layer.act
    assert isinstance(act, UniformAct)
    if node.op_type != "Conv" or _attr(node, "auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ExportError(f"recipe layer {name!r}: a shifted int8 grid needs a Conv with explicit pads")
    scale = _F32(act.scale)
    shift = _F32(_F32(-act.zero_point) * scale)  # c; DQ of code z gives z * s = -c exactly
    pads = [int(p) for p in _attr(node, "pads", [0, 0, 0, 0])]  # type: ignore[union-attr]
    x = node.input[0]
    if any(pads):
        half = len(pads) // 2
        onnx_pads = np.array([0, 0, *pads[:half], 0, 0, *pads[half:]], dtype=np.int64)
        x = ed.make1("Pad", [x, ed.add_init(f"{name}.input_pads", onnx_pads)], f"{name}.input_Pad0", node)
    shifted = ed.make1("Sub", [x, ed.scalar(f"{name}.input_shift", shift)], f"{name}.input_Shift", node)
    node.input[0] = qdq_pair(ed, shifted, scale, node, f"{name}.input")
    weight = ed.array(node.input[1])
    bias = ed.array(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    folded = shift_fold_bias(fake_quant_weight(weight, layer.weight, name), bias, shift)
    node.input[1] = add_weight_dq(ed, node, weight, layer.weight, name)
    b_name = ed.add_init(f"{name}.bias_shift_folded", folded)
    if len(node.input) > 2:
        node.input[2] = b_name
    else:
        node.input.append(b_name)
    for a in node.attribute:
        if a.name == "pads":
            del a.ints[:]
            a.ints.extend([0] * len(pads))


def _lower_int8(
    ed: GraphEditor, node: onnx.NodeProto, name: str, layer: LayerRecipe, options: LoweringOptions
) -> None:
    act = layer.act
    if not isinstance(act, UniformAct) or act.bits != 8 or not act.signed:
        raise ExportError(f"recipe layer {name!r}: the int8 form needs an 8-bit signed uniform act")
    if act.zero_point == 0:
        qdq.lower_layer(ed, node, name, layer, options)
        return
    out_range = cpu_output_range(options, node)
    if out_range is None:
        _lower_shifted(ed, node, name, layer)
        return
    qdq.lower_qlinear(ed, node, name, layer, options, out_range)


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    """Lower each recipe layer in the form its plan names (module docstring).

    Raises:
        ExportError: the recipe has no mixed plan, or a layer is missing or cannot take its form.
    """
    recipe = check_mixed_recipe(recipe)
    model, ed = start(float_model, "mixed", recipe)
    for name, layer, node_name in recipe_nodes(model, recipe, "mixed"):
        form = recipe.plan[name]
        node = ed.node(node_name)
        if form == "split":
            drq_split.lower_layer(ed, node, name, layer, options)
        elif form == "int8":
            _lower_int8(ed, node, name, layer, options)
    ed.commit()
    return finalize(model)
