"""`fakequant`: float emulation of ANY recipe with standard float ops (Div, Round, Clip, Where, ...).

Each recipe conv input gets the float subgraph of its quantizer (`act_graphs.fake_*`), in the float32
operation order of `drq.grids` and the torch quantizers, and its weight is replaced by the
dequantized weight (codes * scale, computed offline in float32). Runs anywhere (onnxruntime, TensorRT
in FP32) and reproduces the torch simulation; it is the reference, not a fast path.
"""

from __future__ import annotations

import onnx

from drq.recipe import DualRegionAct, Recipe, UniformAct
from engine_builder.errors import ExportError
from engine_builder.lowerings.act_graphs import fake_bbit, fake_paper, fake_split, fake_uniform
from engine_builder.lowerings.common import LoweringOptions, fake_quant_weight, recipe_nodes, start
from engine_builder.lowerings.graph import finalize

_DUAL = {"paper": fake_paper, "b-bit": fake_bbit, "split": fake_split}


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    """Fake-quantize every recipe layer's input and weight in float32.

    Raises:
        ExportError: no recipe, or a recipe layer is missing from the graph.
    """
    if recipe is None:
        raise ExportError("fakequant: needs a recipe (use --lowering fp32 for a float model)")
    if recipe.budget == "fp8":
        # An E4M3 cast has no exact plain-float-op form; its Q/DQ graph runs everywhere anyway.
        raise ExportError("recipe: fakequant does not emulate fp8 recipes; use --lowering fp8")
    model, ed = start(float_model, "fakequant", recipe)
    for name, layer, node_name in recipe_nodes(model, recipe, "fakequant"):
        if recipe.plan.get(name) == "fp16":
            continue  # a mixed plan's float layer
        node = ed.node(node_name)
        act = layer.act
        base = f"{name}.input"
        if isinstance(act, UniformAct):
            node.input[0] = fake_uniform(ed, node.input[0], act, node, base)
        else:
            assert isinstance(act, DualRegionAct)
            node.input[0] = _DUAL[act.budget](ed, node.input[0], act, node, base)
        w_hat = fake_quant_weight(ed.array(node.input[1]), layer.weight, name)
        node.input[1] = ed.add_init(f"{name}.weight_fakequant", w_hat)
    ed.commit()
    return finalize(model)
