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


def observe_conv_outputs(
    model: onnx.ModelProto, inputs: Iterable[np.ndarray], threads: int = 1, ops: tuple[str, ...] = ("Conv",)
) -> dict[str, tuple[float, float]]:
    """(min, max) of every `ops` node's output over `inputs` (NCHW float32 arrays), keyed by node name.

    Raises:
        ExportError: no input was given.
    """
    ort = _import_onnxruntime()
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    nodes = [n for n in probe.graph.node if n.op_type in ops]
    known = {o.name for o in probe.graph.output}
    for node in nodes:
        if node.output[0] not in known:
            probe.graph.output.append(
                onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None)
            )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(probe.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    ranges: dict[str, tuple[float, float]] = {}
    seen = 0
    for x in inputs:
        seen += 1
        outputs = sess.run(None, {sess.get_inputs()[0].name: np.asarray(x, dtype=np.float32)})
        values = dict(zip(names, outputs, strict=True))
        for node in nodes:
            v = values[node.output[0]]
            lo, hi = float(v.min()), float(v.max())
            if node.name in ranges:
                lo, hi = min(lo, ranges[node.name][0]), max(hi, ranges[node.name][1])
            ranges[node.name] = (lo, hi)
    if not seen:
        raise ExportError(
            "ort-cpu target: needs at least one calibration image to observe conv output ranges"
        )
    return ranges


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
