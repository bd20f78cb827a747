"""The recipe calibrator against the TensorRT stand-in: serves the cache, never asks for data."""

from __future__ import annotations

import pytest

from engine_builder.backends.base import FeatureUnavailable
from engine_builder.calib_cache import CalibCache, parse_cache
from engine_builder.calibrator import make_calibrator
from tests.fakes import tensorrt as fake_trt


@pytest.mark.parametrize(
    ("algorithm", "base", "tag"),
    [
        ("entropy2", "IInt8EntropyCalibrator2", "EntropyCalibration2"),
        ("minmax", "IInt8MinMaxCalibrator", "MinMaxCalibration"),
    ],
)
def test_calibrator_serves_cache_with_running_version(algorithm: str, base: str, tag: str):
    trt = fake_trt.make_tensorrt("10.8.0.43")
    cache = CalibCache({"lr": 0.02, "r": 0.1}, 8601, "entropy2")
    cal = make_calibrator(trt, cache, algorithm)  # type: ignore[arg-type]
    assert isinstance(cal, getattr(trt, base))
    assert cal._initialised  # base __init__ called (pybind11 trampolines crash otherwise)
    assert cal.get_batch_size() == 1
    assert cal.get_batch(["lr"]) is None
    assert cal.write_calibration_cache(b"ignored") is None
    data = cal.read_calibration_cache()
    assert isinstance(data, bytes)
    assert data.decode().splitlines()[0] == f"TRT-100800-{tag}"
    assert (
        parse_cache(data.decode()).scales
        == parse_cache("TRT-1-EntropyCalibration2\nlr: " + "3ca3d70a" + "\nr: 3dcccccd\n").scales
    )


def test_builder_config_accepts_it():
    trt = fake_trt.make_tensorrt("10.8.0")
    config = trt.IBuilderConfig()
    config.int8_calibrator = make_calibrator(trt, CalibCache({"lr": 0.5}))
    assert trt.STATE.named("int8_calibrator")[0].args == ("IInt8EntropyCalibrator2",)


@pytest.mark.parametrize(("version", "rtx"), [("11.4.0", False), ("1.7.1", True)])
def test_tensorrt_11_and_rtx_have_no_calibrators(version: str, rtx: bool):
    trt = fake_trt.make_tensorrt(version, rtx=rtx)
    with pytest.raises(FeatureUnavailable) as info:
        make_calibrator(trt, CalibCache({"lr": 0.5}))
    assert str(info.value) == (
        f"INT8 calibration (--int8-calibrator) needs TensorRT <= 10.x; found {version}: "
        "TensorRT 11 and TensorRT-RTX take the scales as Q/DQ in the graph "
        "(drq export --lowering qdq)"
    )
