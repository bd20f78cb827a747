"""Tiny hand-made ONNX graphs for engine_builder tests (no torch): Conv -> Relu -> Conv -> DepthToSpace.

`float_sr(scale)` is shaped like a `drq export` float graph: input `lr` (N, 3, H, W) dynamic, output
`sr`, and the `drq.layers` metadata mapping layer names to conv nodes.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def float_sr(
    scale: int = 2, channels: int = 8, qdq: bool = False, plugin_node: bool = False
) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((channels, 3, 3, 3)) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((3 * scale * scale, channels, 3, 3)) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(w1, "head.weight"), numpy_helper.from_array(w2, "tail.weight")]
    nodes = []
    x = "lr"
    if qdq:
        inits += [
            numpy_helper.from_array(np.array(0.01, np.float32), "s"),
            numpy_helper.from_array(np.array(0, np.int8), "z"),
        ]
        nodes += [
            helper.make_node("QuantizeLinear", ["lr", "s", "z"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq"),
        ]
        x = "dq"
    nodes += [
        helper.make_node("Conv", [x, "head.weight"], ["h"], name="/head/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h"], ["r"], name="/act/Relu"),
    ]
    mid = "r"
    opsets = [helper.make_opsetid("", 17)]
    if plugin_node:
        nodes.append(
            helper.make_node("DualRegionDequant", ["r"], ["p"], name="plugin_stand_in", domain="drq")
        )
        mid = "p"
        opsets.append(helper.make_opsetid("drq", 1))
    nodes += [
        helper.make_node("Conv", [mid, "tail.weight"], ["t"], name="/tail/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["t"], ["sr"], name="/ps/DepthToSpace", blocksize=scale, mode="CRD"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_sr",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "SH", "SW"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=opsets)
    if plugin_node:
        body = helper.make_function(
            "drq",
            "DualRegionDequant",
            ["x"],
            ["y"],
            [helper.make_node("Identity", ["x"], ["y"])],
            [helper.make_opsetid("", 17)],
        )
        model.functions.append(body)
    meta = {
        "drq.layers": json.dumps({"head": "/head/Conv", "tail": "/tail/Conv"}),
        "drq.scale": str(scale),
        "drq.lowering": "qdq" if qdq else "fp32",
    }
    if qdq:
        meta["drq.recipe_sha256"] = "ab" * 32
    for key, value in sorted(meta.items()):
        model.metadata_props.add(key=key, value=value)
    return model
