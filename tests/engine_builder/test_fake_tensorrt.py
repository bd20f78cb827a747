"""The TensorRT stand-in enforces what TensorRT documents (each rule cites its page in
tests/fakes/tensorrt/): these tests show the stand-in can refuse, so the builder and runtime tests that
pass against it mean something."""

from __future__ import annotations

import pytest

from tests.fakes import tensorrt as fake_trt
from tests.fakes.tiny_onnx import float_sr


class _Logger:
    """A logger that keeps the errors, as drq's build logger does."""

    def __init__(self, trt) -> None:
        class Keep(trt.ILogger):
            def __init__(self) -> None:
                super().__init__()
                self.errors: list[str] = []

            def log(self, severity, msg) -> None:
                if severity <= trt.ILogger.Severity.ERROR:
                    self.errors.append(msg)

        self.logger = Keep()


def _plan(trt, strongly_typed: bool, flags: tuple[str, ...]) -> tuple[object, list[str]]:
    keep = _Logger(trt).logger
    builder = trt.Builder(keep)
    typed = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed else 0
    network = builder.create_network(typed)
    assert trt.OnnxParser(network, keep).parse(float_sr().SerializeToString())
    config = builder.create_builder_config()
    for flag in flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    profile = builder.create_optimization_profile()
    profile.set_shape("lr", (1, 3, 8, 8), (1, 3, 8, 8), (1, 3, 16, 16))
    config.add_optimization_profile(profile)
    return builder.build_serialized_network(network, config), keep.errors


@pytest.mark.parametrize("flag", ["FP16", "INT8"])
def test_strongly_typed_network_with_a_precision_flag_is_refused(flag: str) -> None:
    trt = fake_trt.make_tensorrt("10.13.0.35")
    plan, errors = _plan(trt, strongly_typed=True, flags=(flag,))
    assert plan is None
    assert errors == [
        f"Error Code 4: API Usage Error (BuilderFlag {flag} set on a strongly typed network; "
        "its precision comes from the graph)"
    ]
    plan, errors = _plan(trt, strongly_typed=False, flags=(flag,))  # weak typing: allowed on 10.x
    assert plan is not None and errors == []


def test_version_compatible_plan_needs_engine_host_code_allowed() -> None:
    trt = fake_trt.make_tensorrt("10.13.0.35")
    plan, _ = _plan(trt, strongly_typed=True, flags=("VERSION_COMPATIBLE",))
    keep = _Logger(trt).logger
    runtime = trt.Runtime(keep)
    assert runtime.deserialize_cuda_engine(bytes(plan)) is None
    assert "set engine_host_code_allowed" in keep.errors[0]
    runtime.engine_host_code_allowed = True
    assert runtime.deserialize_cuda_engine(bytes(plan)) is not None
    # EXCLUDE_LEAN_RUNTIME: no runtime copy in the plan, so no host code to allow
    lean, _ = _plan(trt, strongly_typed=True, flags=("VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"))
    assert trt.Runtime(keep).deserialize_cuda_engine(bytes(lean)) is not None
