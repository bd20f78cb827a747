"""serve.receptive_field: radii read from ONNX graphs, and the radius is what tiling needs, no less."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from drq.imaging.io import from_nchw_float, to_nchw_float
from serve.receptive_field import ReceptiveFieldError, receptive_field
from serve.tiling import upscale_tiled
from tests.fakes.conv_chain import conv_chain_sr, radius

pytestmark = pytest.mark.torch_free


@pytest.mark.parametrize(
    ("kernels", "dilations"), [((3, 3), (1, 1)), ((5, 3, 3), (1, 2, 1)), ((7,), (3,)), ((1, 1), (1, 1))]
)
def test_conv_chains_sum_half_kernels_times_dilation(kernels, dilations) -> None:
    field = receptive_field(conv_chain_sr(2, kernels, dilations))
    assert field.radius == radius(kernels, dilations) + 1  # + the 3x3 conv before DepthToSpace
    assert field.exact and field.approximations == ()


def _model(nodes, inits, opset: int = 17) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "SH", "SW"])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _w(c_out: int, c_in: int, k: int) -> np.ndarray:
    return np.full((c_out, c_in, k, k), 0.01, np.float32)


def test_convs_after_depth_to_space_reach_fractions_of_an_lr_pixel() -> None:
    # Four 3x3 convs at x2 resolution reach 4 HR pixels = 2 LR pixels; a fifth rounds up to 3.
    for count, expected in ((4, 2), (5, 3)):
        nodes = [
            helper.make_node("Conv", ["lr", "up.w"], ["u"]),
            helper.make_node("DepthToSpace", ["u"], ["x0"], blocksize=2),
        ]
        inits = {"up.w": _w(12, 3, 1)}
        for i in range(count):
            nodes.append(helper.make_node("Conv", [f"x{i}", f"w{i}"], [f"x{i + 1}"], pads=[1, 1, 1, 1]))
            inits[f"w{i}"] = _w(3, 3, 3)
        nodes.append(helper.make_node("Identity", [f"x{count}"], ["sr"]))
        assert receptive_field(_model(nodes, inits)).radius == expected


def test_global_statistics_and_strides_make_tiling_approximate() -> None:
    nodes = [
        helper.make_node("Conv", ["lr", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("ReduceMean", ["c"], ["m"], axes=[2, 3], keepdims=1),
        helper.make_node("Mul", ["c", "m"], ["sr"]),
    ]
    field = receptive_field(_model(nodes, {"w": _w(3, 3, 3)}))
    assert field.radius == 1 and not field.exact
    assert "ReduceMean" in field.approximations[0] and "whole feature map" in field.approximations[0]
    strided = [
        helper.make_node("Conv", ["lr", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Resize", ["c", "", "s"], ["sr"], mode="nearest"),
    ]
    field = receptive_field(_model(strided, {"w": _w(3, 3, 3), "s": np.array([1, 1, 2, 2], np.float32)}))
    assert not field.exact and "stride 2" in field.approximations[0]


def test_an_op_without_a_known_reach_is_refused() -> None:
    nodes = [
        helper.make_node("Conv", ["lr", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Transpose", ["c"], ["sr"], perm=[0, 1, 3, 2]),
    ]
    with pytest.raises(
        ReceptiveFieldError, match="Transpose .*cannot derive its spatial reach; pass --overlap"
    ):
        receptive_field(_model(nodes, {"w": _w(3, 3, 3)}))


def test_the_computed_radius_is_exactly_the_overlap_tiling_needs() -> None:
    import onnxruntime as ort

    model = conv_chain_sr(2, (5, 3), (2, 1))
    r = receptive_field(model).radius
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])

    def run(x):
        return session.run(None, {"lr": x})[0]

    image = np.random.default_rng(2).integers(0, 256, (50, 47, 3), dtype=np.uint8)
    whole = from_nchw_float(run(to_nchw_float(image)))
    assert np.array_equal(upscale_tiled(run, image, 2, 2 * r + 6, r), whole)
    assert not np.array_equal(upscale_tiled(run, image, 2, 2 * r + 6, r - 1), whole)


def test_an_explicit_pad_before_an_unpadded_conv_counts_the_conv_s_full_extent() -> None:
    # The mixed lowering's shifted-grid fold: Pad(c) then a conv without pads (a 3x3 reaches 2 pixels
    # one way once its padding is explicit), so the radius is at least what the padded conv needed.
    pads = np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)
    nodes = [
        helper.make_node("Pad", ["lr", "pads", "value"], ["p"], mode="constant"),
        helper.make_node("Conv", ["p", "w"], ["c"]),
        helper.make_node("Conv", ["c", "up.w"], ["u"], pads=[1, 1, 1, 1]),
        helper.make_node("DepthToSpace", ["u"], ["sr"], blocksize=2),
    ]
    inits = {"pads": pads, "value": np.array(0.5, np.float32), "w": _w(3, 3, 3), "up.w": _w(12, 3, 3)}
    field = receptive_field(_model(nodes, inits))
    assert field.radius == 3 and field.exact
