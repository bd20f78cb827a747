"""Graphs for onnxruntime's CPU provider: observe conv output ranges, then lower with `target="ort-cpu"`.

onnxruntime runs a quantized conv in integer arithmetic (QLinearConv, MLAS u8s8 kernels) only when the
QDQ pattern also quantizes the conv output (see `act_graphs.qlinear_conv`). A recipe quantizes conv
inputs only, so the CPU graph takes those output ranges from a few float runs of the TensorRT-form
graph of the same lowering (keyed by node name, so drq-split's two branches get one range each).
TensorRT graphs never use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

import numpy as np
import onnx

from drq.recipe import Recipe
from engine_builder.errors import ExportError, MissingDependency
from engine_builder.lowerings.common import LoweringOptions


def _import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingDependency("the ort-cpu target needs onnxruntime (pip install onnxruntime)") from err
    return onnxruntime


def observe_tensor_ranges(
    model: onnx.ModelProto, inputs: Iterable[np.ndarray], tensors: Iterable[str], threads: int = 1
) -> dict[str, tuple[float, float]]:
    """(min, max) of every named float tensor over `inputs` (NCHW float32 arrays), keyed by tensor name.

    A graph input's range is taken from the arrays themselves; every other tensor becomes an extra
    graph output of a probe copy run in onnxruntime.

    Raises:
        ExportError: no input was given.
    """
    ort = _import_onnxruntime()
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph_inputs = [v.name for v in probe.graph.input]
    wanted = list(dict.fromkeys(tensors))
    known = {o.name for o in probe.graph.output}
    for name in wanted:
        if name not in known and name not in graph_inputs:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ranges: dict[str, tuple[float, float]] = {}
    seen = 0
    for x in inputs:
        seen += 1
        x = np.asarray(x, dtype=np.float32)
        values = dict(zip(names, sess.run(None, {sess.get_inputs()[0].name: x}), strict=True))
        values.update({name: x for name in graph_inputs[:1]})
        for name in wanted:
            v = values[name]
            lo, hi = float(v.min()), float(v.max())
            if name in ranges:
                lo, hi = min(lo, ranges[name][0]), max(hi, ranges[name][1])
            ranges[name] = (lo, hi)
    if not seen:
        raise ExportError("observing tensor ranges: needs at least one calibration image")
    return ranges


def observe_conv_outputs(
    model: onnx.ModelProto, inputs: Iterable[np.ndarray], threads: int = 1, ops: tuple[str, ...] = ("Conv",)
) -> dict[str, tuple[float, float]]:
    """(min, max) of every `ops` node's output over `inputs` (NCHW float32 arrays), keyed by node name.

    Raises:
        ExportError: no input was given.
    """
    nodes = [n for n in model.graph.node if n.op_type in ops]
    try:
        by_tensor = observe_tensor_ranges(model, inputs, [n.output[0] for n in nodes], threads)
    except ExportError as err:
        raise ExportError(
            "ort-cpu target: needs at least one calibration image to observe conv output ranges"
        ) from err
    return {node.name: by_tensor[node.output[0]] for node in nodes}


def lower_for_ort_cpu(
    lowering: str,
    float_model: onnx.ModelProto,
    recipe: Recipe | None,
    options: LoweringOptions,
    inputs: Iterable[np.ndarray],
) -> onnx.ModelProto:
    """Lower with `target="ort-cpu"`, conv output ranges observed on `inputs` through the TensorRT form."""
    from engine_builder.lowerings.registry import lower

    reference = lower(lowering, float_model, recipe, replace(options, target="tensorrt", output_ranges=None))
    ranges = observe_conv_outputs(reference, inputs)
    return lower(lowering, float_model, recipe, replace(options, target="ort-cpu", output_ranges=ranges))
