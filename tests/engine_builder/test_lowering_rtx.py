"""Every lowering's graph parses and builds with TensorRT-RTX (which builds on the CPU): proof that the
Q/DQ placement, the twin convs of drq-split and the fp16 typing are accepted by a TensorRT parser."""

from __future__ import annotations

import pytest

from engine_builder.export.torch_export import export_float_onnx
from engine_builder.lowerings.common import LoweringOptions
from engine_builder.lowerings.registry import lower
from tests.engine_builder.test_export import TinySR, make_recipe

pytestmark = pytest.mark.rtx

CASES = [
    ("fp32", None, LoweringOptions()),
    ("fp16", None, LoweringOptions(io_dtype="fp16")),
    ("qdq", "uniform", LoweringOptions()),
    ("drq-split", "split", LoweringOptions()),
    ("drq-split", "split", LoweringOptions(outlier_channels_only=True)),
    ("fakequant", "paper", LoweringOptions()),
    ("drq-plugin", "b-bit", LoweringOptions()),
    # FP16 glue (engine_builder.lowerings.fp16_glue): float16 scales, DQ outputs and float ops
    ("qdq", "uniform", LoweringOptions(glue="fp16")),
    ("qdq", "uniform", LoweringOptions(glue="fp16", io_dtype="fp16")),
    ("drq-split", "split", LoweringOptions(glue="fp16")),
    ("drq-split", "split", LoweringOptions(glue="fp16", outlier_channels_only=True)),
    ("drq-plugin", "b-bit", LoweringOptions(glue="fp16")),
]


@pytest.fixture(scope="module")
def net_and_graph():
    net = TinySR().eval()
    return net, export_float_onnx(net, scale=2)


def _parse_and_build(model) -> None:
    trt = pytest.importorskip("tensorrt_rtx")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(model.SerializeToString())
    assert ok, [str(parser.get_error(i)) for i in range(parser.num_errors)]
    assert network.get_input(0).name == "lr" and tuple(network.get_input(0).shape) == (-1, 3, -1, -1)
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("lr", (1, 3, 8, 8), (1, 3, 32, 32), (2, 3, 48, 48))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    assert engine is not None and engine.nbytes > 0


@pytest.mark.parametrize("lowering,budget,options", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_tensorrt_rtx_parses_and_builds(net_and_graph, lowering, budget, options) -> None:
    net, graph = net_and_graph
    _parse_and_build(lower(lowering, graph, make_recipe(net, budget) if budget else None, options))


def test_tensorrt_rtx_builds_the_mixed_plan_with_fp16_glue(net_and_graph) -> None:
    from drq.recipe import UniformAct, f32
    from tests.engine_builder.test_lowering_mixed import PLAN, _mixed

    net, graph = net_and_graph
    recipe = _mixed(net, PLAN, {"head": UniformAct(bits=8, scale=f32(1 / 255), zero_point=-128)})
    _parse_and_build(lower("mixed", graph, recipe, LoweringOptions(glue="fp16")))
