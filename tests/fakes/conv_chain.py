"""A tiny SR network with a known receptive field, built with onnx helpers (no torch).

`conv_chain_sr(scale, kernels, dilations)`: Conv(k_i, dilation d_i, "same" padding) -> Relu for each
layer, then a 3x3 conv to ``3 * scale^2`` channels and DepthToSpace, like a `drq export` float graph
(input ``lr`` N x 3 x H x W dynamic, output ``sr``). Its output at an LR pixel depends on the input within
``radius(kernels, dilations) + 1`` pixels (the last 3x3 conv adds one).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def radius(kernels: tuple[int, ...], dilations: tuple[int, ...]) -> int:
    """Receptive-field radius of the body convs: sum of (k - 1) / 2 * dilation."""
    return sum((k - 1) // 2 * d for k, d in zip(kernels, dilations, strict=True))


def conv_chain_sr(
    scale: int = 2,
    kernels: tuple[int, ...] = (3, 3),
    dilations: tuple[int, ...] | None = None,
    channels: int = 6,
    seed: int = 0,
) -> onnx.ModelProto:
    dilations = dilations or (1,) * len(kernels)
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    x, c_in = "lr", 3
    layers = [*zip(kernels, dilations, strict=True), (3, 1)]
    for i, (k, d) in enumerate(layers):
        last = i == len(layers) - 1
        c_out = 3 * scale * scale if last else channels
        w = (rng.standard_normal((c_out, c_in, k, k)) * 0.3 / k).astype(np.float32)
        b = (rng.standard_normal(c_out) * 0.05 + (0.5 if last else 0.0)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"c{i}.w"), numpy_helper.from_array(b, f"c{i}.b")]
        pad = (k - 1) // 2 * d
        out = f"c{i}"
        nodes.append(
            helper.make_node(
                "Conv", [x, f"c{i}.w", f"c{i}.b"], [out], name=f"/c{i}/Conv", pads=[pad] * 4, dilations=[d, d]
            )
        )
        if not last:
            nodes.append(helper.make_node("Relu", [out], [f"r{i}"], name=f"/r{i}/Relu"))
            out = f"r{i}"
        x, c_in = out, c_out
    nodes.append(
        helper.make_node("DepthToSpace", [x], ["sr"], name="/ps/DepthToSpace", blocksize=scale, mode="CRD")
    )
    graph = helper.make_graph(
        nodes,
        "conv_chain_sr",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "SH", "SW"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.metadata_props.add(key="drq.scale", value=str(scale))
    return model
