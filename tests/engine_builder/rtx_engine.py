"""Parse and build an ONNX graph with TensorRT-RTX on the CPU (the `rtx`-marked tests share this)."""

from __future__ import annotations

import onnx
import pytest


def build_rtx_engine(model: onnx.ModelProto, targets: tuple[str, ...] = ()) -> int:
    """Build `model` (input `lr`, 1 x 3 x 8..48 x 8..48) for the `ComputeCapability` names in
    `targets` (the RTX default when empty); returns the serialized engine's size in bytes."""
    trt = pytest.importorskip("tensorrt_rtx")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(model.SerializeToString()), [
        str(parser.get_error(i)) for i in range(parser.num_errors)
    ]
    config = builder.create_builder_config()
    if targets:
        config.num_compute_capabilities = len(targets)
        for index, name in enumerate(targets):
            config.set_compute_capability(getattr(trt.ComputeCapability, name), index)
    profile = builder.create_optimization_profile()
    profile.set_shape("lr", (1, 3, 8, 8), (1, 3, 32, 32), (1, 3, 48, 48))
    config.add_optimization_profile(profile)
    engine = builder.build_serialized_network(network, config)
    assert engine is not None
    return int(engine.nbytes)
