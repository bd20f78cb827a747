"""FP16 glue: every float op of a quantizing lowering's graph in float16, casts only at the graph I/O.

A pass over the output of any quantizing lowering (`qdq`, `drq-split`, `drq-plugin`, and any later one
registered in `engine_builder.lowerings.registry`): the INT8 convolutions stay as the lowering wrote
them, and the float compute around them (bias, residual Add, Concat, activations, DepthToSpace, the
Clip/Sub of drq-split, the float side of Q/DQ) becomes float16, which is what the FP16 engine a
TensorRT user compares against computes.

How the graph says it, so that a strongly typed network (TensorRT 11, TensorRT-RTX: the tensor types
decide the precision, there is no FP16 builder flag) builds exactly this:

* the default-domain opset is raised to 19: from opset 19 QuantizeLinear and DequantizeLinear take
  float16 scales, and DequantizeLinear's output type is its scale's type ("If output_dtype is not
  supplied then the output type is the same as x_scale", onnx.ai/onnx/operators/
  onnx__DequantizeLinear.html; opset 13 allowed float32 scales only). So every scale initializer
  becomes float16 and each DQ yields float16, with no Cast between DQ and the conv (a Cast there would
  split TensorRT's DQ -> Conv fusion);
* every other float32 initializer and Constant becomes float16 (`fp16.convert_to_fp16`), Casts to
  float32 become Casts to float16, except the inputs ONNX keeps float32 in every opset (Resize
  roi/scales) and the dual-region plugin's float32[5] params (`plugins.onnx_function`: "float32[5]
  `params`");
* `DualRegionDequant` gets `out_dtype = FLOAT16`; `DualRegionQuantize` reads float16 x (both are in the
  plugin's contract: plugins/onnx_function.py, plugins/trt_registration.py `dequant_desc`), so no cast
  surrounds the plugin nodes;
* `lr` / `sr` stay float32 behind one Cast each, or become float16 with `io_dtype="fp16"`.

`float32_compute_nodes` is the check: after type inference, the nodes that still read or write a
float32 activation, the I/O casts excepted.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper, version_converter

from engine_builder.errors import ExportError
from engine_builder.lowerings.fp16 import convert_to_fp16
from engine_builder.lowerings.graph import GraphEditor, finalize, opset_of, set_metadata
from plugins.onnx_function import attach_functions, strip_functions

GLUE_OPSET = 19
"""Lowest default-domain opset whose QuantizeLinear/DequantizeLinear take float16 scales."""
GLUE_KEY = "drq.glue"  # metadata: "fp16" on graphs this pass wrote
PLUGIN_DOMAIN = "drq"
PLUGIN_DEQUANT = "DualRegionDequant"
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
_FP16 = np.finfo(np.float16)


def _raise_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model at default-domain opset >= GLUE_OPSET (onnx's version converter).

    The converter rewrites the main graph only, and ONNX requires local functions to import the model's
    default opset, so the dual-region function bodies are written again for the new opset.
    """
    if opset_of(model) >= GLUE_OPSET:
        return model
    had_plugin_functions = any(fn.domain == PLUGIN_DOMAIN for fn in model.functions)
    stripped = strip_functions(model)
    if stripped.functions:
        raise ExportError("fp16 glue: the graph carries local functions this pass cannot re-target")
    try:
        converted = version_converter.convert_version(stripped, GLUE_OPSET)
    except Exception as err:  # the converter raises bare RuntimeError/ValueError on adapter failures
        raise ExportError(f"fp16 glue: cannot raise the opset to {GLUE_OPSET} ({err})") from err
    return attach_functions(converted) if had_plugin_functions else converted


def _plugin_params(model: onnx.ModelProto) -> set[str]:
    """Inputs that stay float32: the plugin nodes' params vectors."""
    return {
        node.input[1] for node in model.graph.node if node.domain == PLUGIN_DOMAIN and len(node.input) > 1
    }


def _check_scales(model: onnx.ModelProto) -> None:
    """Refuse Q/DQ scales that float16 cannot hold (zero after rounding, or beyond its range).

    Raises:
        ExportError: naming the scale initializer.
    """
    inits = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type not in _QDQ_OPS or node.input[1] not in inits:
            continue
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float64)
        if np.any(np.abs(scale) > _FP16.max) or np.any(scale.astype(np.float16) == 0):
            raise ExportError(
                f"fp16 glue: scale {node.input[1]!r} of {node.name!r} ({float(np.min(scale)):.3g}.."
                f"{float(np.max(scale)):.3g}) does not fit float16; export with --glue fp32"
            )


def apply_fp16_glue(model: onnx.ModelProto, io_dtype: str = "fp32") -> onnx.ModelProto:
    """A copy of a lowered graph with every non-quantized op in float16 (see the module docstring).

    Raises:
        ExportError: a scale float16 cannot hold, or the opset cannot be raised.
    """
    _check_scales(model)
    out = _raise_opset(model)
    out = copy.deepcopy(out) if out is model else out
    for node in out.graph.node:
        if node.domain == PLUGIN_DOMAIN and node.op_type == PLUGIN_DEQUANT:
            for attr in node.attribute:
                if attr.name == "out_dtype":
                    attr.i = TensorProto.FLOAT16
    GraphEditor(out)  # names every node (the boundary casts are anchored by name)
    convert_to_fp16(out, io_dtype, keep=_plugin_params(out))
    set_metadata(out, {GLUE_KEY: "fp16"})
    return finalize(out)


def _elem_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model, check_type=True)
    types = {t.name: int(t.data_type) for t in inferred.graph.initializer}
    for value in list(inferred.graph.input) + list(inferred.graph.output) + list(inferred.graph.value_info):
        types[value.name] = int(value.type.tensor_type.elem_type)
    return types


def float32_compute_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes that read or write a float32 activation, except the Casts that take a float32 graph input
    in or give a float32 graph output out. Constants and initializers are not activations (the plugin
    params and Resize scales stay float32 by contract). Types from onnx shape inference."""
    types = _elem_types(model)
    inits = {t.name for t in model.graph.initializer}
    inits |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    io = {v.name for v in model.graph.input} | {v.name for v in model.graph.output}
    bad = []
    for node in model.graph.node:
        if node.op_type == "Constant" or (
            node.op_type == "Cast" and (node.input[0] in io or node.output[0] in io)
        ):
            continue
        tensors = [t for t in node.input if t and t not in inits] + [t for t in node.output if t]
        if any(types.get(t) == TensorProto.FLOAT for t in tensors):
            bad.append(node.name)
    return bad
