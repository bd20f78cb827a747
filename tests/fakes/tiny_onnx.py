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


def qlinear_sr(scale: int = 2, channels: int = 8) -> onnx.ModelProto:
    """`float_sr`'s two convs in the QDQ form onnxruntime's CPU provider fuses into QLinearConv.

    Each conv: Q(x, uint8, zero point 128) -> DQ -> Conv(DQ(int8 weights, per output channel),
    DQ(int32 bias)) -> Q(uint8) -> DQ, the pattern of `engine_builder.lowerings.act_graphs.qlinear_conv`.
    """
    base = float_sr(scale, channels)
    weights = {t.name: numpy_helper.to_array(t) for t in base.graph.initializer}
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def qdq(x: str, tag: str, s: float, zp: int) -> str:
        inits.extend(
            [
                numpy_helper.from_array(np.array(s, np.float32), f"{tag}.s"),
                numpy_helper.from_array(np.array(zp, np.uint8), f"{tag}.zp"),
            ]
        )
        nodes.append(
            helper.make_node("QuantizeLinear", [x, f"{tag}.s", f"{tag}.zp"], [f"{tag}.q"], name=f"{tag}.Q")
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear", [f"{tag}.q", f"{tag}.s", f"{tag}.zp"], [f"{tag}.dq"], name=f"{tag}.DQ"
            )
        )
        return f"{tag}.dq"

    def conv(x: str, layer: str, x_scale: float, out: str) -> str:
        w = weights[f"{layer}.weight"]
        w_scale = (np.abs(w).reshape(w.shape[0], -1).max(axis=1) / 127.0).astype(np.float32)
        codes = np.clip(np.rint(w / w_scale[:, None, None, None]), -127, 127).astype(np.int8)
        b_scale = (np.float32(x_scale) * w_scale).astype(np.float32)
        inits.extend(
            [
                numpy_helper.from_array(codes, f"{layer}.w_q"),
                numpy_helper.from_array(w_scale, f"{layer}.w_s"),
                numpy_helper.from_array(np.zeros(w.shape[0], np.int8), f"{layer}.w_zp"),
                numpy_helper.from_array(np.zeros(w.shape[0], np.int32), f"{layer}.b_q"),
                numpy_helper.from_array(b_scale, f"{layer}.b_s"),
            ]
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{layer}.w_q", f"{layer}.w_s", f"{layer}.w_zp"],
                [f"{layer}.w"],
                name=f"{layer}.w_DQ",
                axis=0,
            )
        )
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [f"{layer}.b_q", f"{layer}.b_s"],
                [f"{layer}.b"],
                name=f"{layer}.b_DQ",
                axis=0,
            )
        )
        nodes.append(
            helper.make_node(
                "Conv", [x, f"{layer}.w", f"{layer}.b"], [out], name=f"/{layer}/Conv", pads=[1, 1, 1, 1]
            )
        )
        return qdq(out, f"{layer}.out", 0.05, 128)

    h = conv(qdq("lr", "head.in", 1 / 255, 128), "head", 1 / 255, "h")
    nodes.append(helper.make_node("Relu", [h], ["r"], name="/act/Relu"))
    t = conv(qdq("r", "tail.in", 0.02, 128), "tail", 0.02, "t")
    nodes.append(
        helper.make_node("DepthToSpace", [t], ["sr"], name="/ps/DepthToSpace", blocksize=scale, mode="CRD")
    )
    graph = helper.make_graph(
        nodes, "tiny_sr_qlinear", list(base.graph.input), list(base.graph.output), inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for prop in base.metadata_props:
        model.metadata_props.add(key=prop.key, value=prop.value)
    return model
