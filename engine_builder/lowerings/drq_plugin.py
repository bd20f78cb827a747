"""`drq-plugin`: the dual-region `b-bit` budget with conv inputs carried as int8 codes.

Before each recipe conv: `DualRegionQuantize(x, params) -> int8 codes -> DualRegionDequant(codes,
params) -> float`, params = `drq.grids.bbit_grid(act).params()` as a float32[7] initializer; the conv
weight is int8 codes behind a DequantizeLinear (as in `qdq`). The nodes come from
`plugins.onnx_function` and the file carries their ONNX local functions, so onnxruntime runs it as is;
TensorRT maps the nodes to the `drq::DualRegion*` plugins (strip the bodies with
`plugins.onnx_function.strip_functions` to force that in every TensorRT version).
"""

from __future__ import annotations

import onnx

from drq.grids import bbit_grid
from drq.recipe import DualRegionAct, Recipe
from engine_builder.errors import ExportError
from engine_builder.lowerings.common import LoweringOptions, add_weight_dq, check_recipe, recipe_nodes, start
from engine_builder.lowerings.graph import finalize
from plugins.errors import PluginError
from plugins.onnx_function import attach_functions, make_dequant_node, make_quantize_node
from plugins.spec import validate_params


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    """Quantize/dequantize every recipe conv input through the dual-region ops (module docstring).

    Raises:
        ExportError: the recipe's budget is not `b-bit`, or a layer is missing.
    """
    recipe = check_recipe(recipe, "drq-plugin", "b-bit")
    model, ed = start(float_model, "drq-plugin", recipe)
    for name, layer, node_name in recipe_nodes(model, recipe, "drq-plugin"):
        node = ed.node(node_name)
        act = layer.act
        assert isinstance(act, DualRegionAct)
        try:
            values = validate_params(bbit_grid(act).params())
        except PluginError as err:
            raise ExportError(f"recipe layer {name!r}: {err}") from err
        params = ed.add_init(f"{name}.input_params", values)
        codes = ed.unique(f"{name}.input_codes")
        x_hat = ed.unique(f"{name}.input_dequant")
        ed.place(
            make_quantize_node(
                node.input[0], params, codes, name=ed.unique(f"{name}.input_DualRegionQuantize")
            ),
            node,
        )
        ed.place(
            make_dequant_node(codes, params, x_hat, name=ed.unique(f"{name}.input_DualRegionDequant")), node
        )
        node.input[0] = x_hat
        node.input[1] = add_weight_dq(ed, node, ed.array(node.input[1]), layer.weight, name)
    ed.commit()
    return finalize(attach_functions(model))
