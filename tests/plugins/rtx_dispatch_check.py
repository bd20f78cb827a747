"""Which importer TensorRT-RTX's real ONNX parser picks for the dual-region nodes once plugins are registered.

Run as `python -m tests.plugins.rtx_dispatch_check {stripped|functions|dequant}` by
`test_rtx_parser_dispatch.py`. It registers two minimal Python plugin creators,
`drq::DualRegionQuantize` / `drq::DualRegionDequant` version "1" (the ids `plugins.trt_registration`
registers; the creators are stand-ins, since TensorRT-RTX ships no `tensorrt.plugin`), then parses a
quantize -> dequant model with a VERBOSE logger that prints every message, and prints one
`FIELDS <op> <name>=<value>` line per attribute the parser hands to `create_plugin`.

TensorRT-RTX 1.7.1 aborts the process (std::terminate, no Python exception) right after the parser
has created the plugin and logged "Successfully created plugin" (its Python bindings have no
`add_plugin_v3` either), so the caller reads the dispatch decision from the printed log, whatever the
exit status. If a later release adds the layer instead, the script prints `LAYERS` with the layer types.
"""

from __future__ import annotations

import sys

import numpy as np


def main(variant: str) -> None:
    import tensorrt_rtx as trt
    from onnx import TensorProto, helper

    from plugins.onnx_function import (
        attach_functions,
        make_dequant_node,
        make_quantize_node,
        params_initializer,
        strip_functions,
    )
    from tests.plugins.edge_cases import params_sets

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: object, msg: str) -> None:
            print(f"[{severity}] {msg}", flush=True)

    class Plugin(trt.IPluginV3, trt.IPluginV3OneCore, trt.IPluginV3OneBuild, trt.IPluginV3OneRuntime):
        def __init__(self, name: str, out_dtype: object) -> None:
            trt.IPluginV3.__init__(self)
            trt.IPluginV3OneCore.__init__(self)
            trt.IPluginV3OneBuild.__init__(self)
            trt.IPluginV3OneRuntime.__init__(self)
            self.plugin_name, self.plugin_namespace, self.plugin_version = name, "drq", "1"
            self.num_outputs = 1
            self.out_dtype = out_dtype

        def get_capability_interface(self, type: object) -> object:  # noqa: A002 (TensorRT's name)
            return self

        def get_output_data_types(self, input_types: object) -> list[object]:
            return [self.out_dtype]

        def get_output_shapes(self, inputs: list[object], shape_inputs: object, expr_builder: object) -> list:
            return [trt.DimsExprs(inputs[0])]

        def clone(self) -> Plugin:
            return Plugin(self.plugin_name, self.out_dtype)

    keep: list[object] = []

    class Creator(trt.IPluginCreatorV3One):
        def __init__(self, name: str, out_dtype: object, fields: list[object]) -> None:
            trt.IPluginCreatorV3One.__init__(self)
            self.name, self.plugin_namespace, self.plugin_version = name, "drq", "1"
            self.field_names = trt.PluginFieldCollection(fields)
            self.out_dtype = out_dtype

        def create_plugin(self, name: str, fc: object, phase: object) -> Plugin:
            for field in fc:
                print(f"FIELDS {self.name} {field.name}={np.asarray(field.data).tolist()}", flush=True)
            plugin = Plugin(self.name, self.out_dtype)
            keep.append(plugin)
            return plugin

    params = params_sets()["b8_two_tails"]
    if variant == "dequant":  # the process stops at the first plugin, so the dequant node gets its own
        nodes = [make_dequant_node("codes", "params", "y", TensorProto.FLOAT16)]
        io = [("codes", TensorProto.INT8), ("y", TensorProto.FLOAT16)]
    else:
        nodes = [make_quantize_node("x", "params", "codes"), make_dequant_node("codes", "params", "y")]
        io = [("x", TensorProto.FLOAT), ("y", TensorProto.FLOAT)]
    graph = helper.make_graph(
        nodes,
        "rtx",
        [helper.make_tensor_value_info(*io[0], [1, 3, 8, 8])],
        [helper.make_tensor_value_info(*io[1], [1, 3, 8, 8])],
        initializer=[params_initializer("params", params)],
    )
    model = attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    if variant == "stripped":
        model = strip_functions(model)
    out_dtype_field = trt.PluginField("out_dtype", np.array([1], np.int32), trt.PluginFieldType.INT32)
    creators = [
        Creator("DualRegionQuantize", trt.DataType.INT8, []),
        Creator("DualRegionDequant", trt.DataType.HALF, [out_dtype_field]),
    ]
    registry = trt.get_plugin_registry()
    for creator in creators:
        if not registry.register_creator(creator, "drq"):
            raise SystemExit(f"could not register {creator.name}")
    print("REGISTERED", flush=True)
    logger = Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(model.SerializeToString())
    print("PARSED", ok, [parser.get_error(i).desc() for i in range(parser.num_errors)], flush=True)
    print("LAYERS", [str(network.get_layer(i).type) for i in range(network.num_layers)], flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
