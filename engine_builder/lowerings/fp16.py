"""`fp16`: the FP16 baseline with the precision written in the graph.

TensorRT 11 (and TensorRT-RTX) build strongly typed networks: there is no FP16 builder flag, the
tensor types in the ONNX graph decide the precision. So every float32 weight, constant and Cast target
becomes float16; the I/O stays float32 (one Cast at each end) unless `io_dtype="fp16"`.
Inputs that ONNX requires in float32 whatever the data type (Resize roi/scales) are left alone.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from drq.recipe import Recipe
from engine_builder.lowerings.common import LoweringOptions, start
from engine_builder.lowerings.graph import GraphEditor, finalize

# (op_type, input index) pairs whose float input must stay float32 in every opset.
_KEEP_F32_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}


def _to_fp16(tensor: onnx.TensorProto) -> onnx.TensorProto:
    value = numpy_helper.to_array(tensor)
    if np.any(np.abs(value[np.isfinite(value)]) > np.finfo(np.float16).max):
        # A constant beyond float16 range (e.g. a -1e9 mask) saturates to the float16 extreme, not inf.
        value = np.clip(value, np.finfo(np.float16).min, np.finfo(np.float16).max)
    return numpy_helper.from_array(value.astype(np.float16), tensor.name)


def convert_to_fp16(model: onnx.ModelProto, io_dtype: str, keep: set[str] | None = None) -> None:
    """Rewrite a float32 graph to float16 compute in place (see module docstring).

    `keep` names further float32 initializers/constants to leave alone (e.g. plugin parameters).
    """
    graph = model.graph
    keep = set(keep or ())
    for node in graph.node:
        for i, name in enumerate(node.input):
            if (node.op_type, i) in _KEEP_F32_INPUTS:
                keep.add(name)
    for i, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT and tensor.name not in keep:
            graph.initializer[i].CopyFrom(_to_fp16(tensor))
    for node in graph.node:
        for attr in node.attribute:
            if (
                node.op_type == "Constant"
                and attr.name == "value"
                and attr.t.data_type == TensorProto.FLOAT
                and node.output[0] not in keep
            ):
                attr.t.CopyFrom(_to_fp16(attr.t))
            elif node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                attr.i = TensorProto.FLOAT16
    ed = GraphEditor(model)
    first = graph.node[0]
    for value in graph.input:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            _retype_boundary(ed, value, io_dtype, first=first)
    ed.commit()
    for value in graph.output:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT:
            _retype_boundary(ed, value, io_dtype, first=None)


def _retype_boundary(
    ed: GraphEditor, value: onnx.ValueInfoProto, io_dtype: str, first: onnx.NodeProto | None
) -> None:
    """Make a graph input (`first` given) or output float16, or keep it float32 behind a Cast."""
    if io_dtype == "fp16":
        value.type.tensor_type.elem_type = TensorProto.FLOAT16
        return
    inner = ed.unique(f"{value.name}_fp16")
    for node in ed.graph.node:  # the graph now computes `inner` (output) or reads it (input)
        for field in (node.input, node.output) if first is None else (node.input,):
            for j, name in enumerate(field):
                if name == value.name:
                    field[j] = inner
    if first is not None:
        ed.place(
            helper.make_node(
                "Cast", [value.name], [inner], name=ed.unique(f"{value.name}_to_fp16"), to=TensorProto.FLOAT16
            ),
            first,
        )
    else:
        ed.graph.node.append(
            helper.make_node(
                "Cast", [inner], [value.name], name=ed.unique(f"{value.name}_to_fp32"), to=TensorProto.FLOAT
            )
        )


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    """Float16 weights and compute; `lr`/`sr` float32 (default) or float16 (`io_dtype="fp16"`)."""
    model, _ = start(float_model, "fp16", None)
    convert_to_fp16(model, options.io_dtype)
    return finalize(model)
