"""`drq-split`: the dual-region `split` budget as two standard INT8 branches per conv input.

For a conv input x with breakpoint bp and scales s_d = bp / Q, s_o (`drq.grids.split_grid`):

    c = Clip(x, -bp, bp) -> Q/DQ(s_d)          dense branch, codes within [-Q, Q]
    r = x - c            -> Q/DQ(s_o)          outlier residual (clipped to the b-bit code range * s_o
                                               below 8 bits, where int8 saturation would not clamp it)
    y = Conv(DQ(c), W, b) + Conv(DQ(r), W)     same DQ'd weights, bias on the dense conv only

Each branch is a plain DQ -> Conv pattern, so TensorRT fuses both into INT8 convolutions and the Add
into the second one's epilogue. `outlier_channels_only` gathers the recipe's outlier channels before
the outlier branch and slices the matching weight input channels offline (groups == 1 Conv only; an
empty list drops the branch): fewer MACs, at the price of ignoring outliers seen only at run time in
other channels.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from drq.grids import split_grid
from drq.recipe import DualRegionAct, Recipe
from engine_builder.errors import ExportError
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

OUTLIER_SUFFIX = "_outlier"  # name of the outlier-branch conv: the dense conv's node name + this


def _outlier_index(node: onnx.NodeProto, act: DualRegionAct, options: LoweringOptions) -> np.ndarray | None:
    """Channel indices of the restricted outlier branch, or None for the full branch."""
    if not options.outlier_channels_only or act.outlier_channels is None or node.op_type != "Conv":
        return None
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    return np.asarray(act.outlier_channels, dtype=np.int64) if group == 1 else None


def lower_layer(ed: GraphEditor, node: onnx.NodeProto, name: str, layer, options: LoweringOptions) -> None:
    """One split conv input: dense and outlier branches (module docstring)."""
    act = layer.act
    g = split_grid(act)
    x = node.input[0]
    weight = ed.array(node.input[1])
    codes, w_scale, w_axis = weight_codes(weight, layer.weight, name)
    index = _outlier_index(node, act, options)
    if index is not None and index.size and int(index.max()) >= weight.shape[1]:
        raise ExportError(
            f"recipe layer {name!r}: outlier channel {int(index.max())} >= {weight.shape[1]} input channels"
        )
    neg_bp, bp = ed.scalar(f"{name}.neg_bp", -g.breakpoint), ed.scalar(f"{name}.bp", g.breakpoint)
    dense_in = ed.make1("Clip", [x, neg_bp, bp], f"{name}.input_ClipDense", node)
    if index is not None:
        idx = ed.add_init(f"{name}.outlier_channels", index)
        x_sel = (
            ed.make1("Gather", [x, idx], f"{name}.input_GatherOutlier", node, axis=1) if index.size else None
        )
        out_codes = codes[:, index]
    else:
        x_sel, out_codes = x, codes
    residual = None
    if x_sel is not None:
        clip_sel = (
            dense_in
            if index is None
            else ed.make1("Clip", [x_sel, neg_bp, bp], f"{name}.input_ClipSel", node)
        )
        residual = ed.make1("Sub", [x_sel, clip_sel], f"{name}.input_Residual", node)
        if (g.outlier_qmin, g.outlier_qmax) != (-128, 127):
            # below 8 bits the outlier codes saturate inside int8: clip the residual to the code range
            lo = ed.scalar(f"{name}.outlier_min", np.float32(g.outlier_qmin) * g.s_o)
            hi = ed.scalar(f"{name}.outlier_max", np.float32(g.outlier_qmax) * g.s_o)
            residual = ed.make1("Clip", [residual, lo, hi], f"{name}.input_ClipOutlier", node)
    dense_range = cpu_output_range(options, node)
    outlier_range = cpu_output_range(options, node, OUTLIER_SUFFIX) if residual else None
    if dense_range is not None and (residual is None or outlier_range is not None):
        # onnxruntime CPU: two QLinearConvs, each output quantized on its own observed range
        out = qlinear_conv(
            ed,
            node,
            [(dense_in, g.s_d, codes)],
            w_scale,
            w_axis,
            dense_range,
            name,
            weight_type=options.ort_weights,
        )
        if residual is not None:
            outl = qlinear_conv(
                ed,
                node,
                [(residual, g.s_o, out_codes)],
                w_scale,
                w_axis,
                outlier_range,
                f"{name}{OUTLIER_SUFFIX}",
                with_bias=False,
                weight_type=options.ort_weights,
            )
            out = ed.make1("Add", [out, outl], f"{name}_AddBranches", node)
        ed.replace_output(node, out)
        return
    w_dq = add_weight_dq(ed, node, weight, layer.weight, name)
    node.input[0] = qdq_pair(ed, dense_in, g.s_d, node, f"{name}.input_dense")
    node.input[1] = w_dq
    if residual is None:
        return
    r_dq = qdq_pair(ed, residual, g.s_o, node, f"{name}.input_outlier")
    w_out = (
        w_dq
        if index is None
        else add_weight_dq(
            ed, node, weight, layer.weight, name, codes=out_codes, base=f"{name}.weight_outlier"
        )
    )
    # The outlier conv: same op and attributes, no bias; placed after the dense conv.
    y = node.output[0]
    dense_out = ed.unique(f"{name}_dense_out")
    node.output[0] = dense_out
    outlier_out = ed.unique(f"{name}_outlier_out")
    twin = helper.make_node(
        node.op_type, [r_dq, w_out], [outlier_out], name=ed.unique(node.name + OUTLIER_SUFFIX)
    )
    twin.attribute.extend(node.attribute)
    add = helper.make_node("Add", [dense_out, outlier_out], [y], name=ed.unique(f"{node.name}_AddBranches"))
    ed.after.setdefault(node.name, []).extend([twin, add])


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    """Lower a split-budget recipe to two INT8 Q/DQ branches per conv (see module docstring).

    Raises:
        ExportError: the recipe's budget is not `split`, or a layer is missing.
    """
    recipe = check_recipe(recipe, "drq-split", "split")
    model, ed = start(float_model, "drq-split", recipe)
    for name, layer, node_name in recipe_nodes(model, recipe, "drq-split"):
        lower_layer(ed, ed.node(node_name), name, layer, options)
    ed.commit()
    return finalize(model)
