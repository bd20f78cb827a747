"""The builder's `EngineBackend` Protocol; TensorRT is imported by `serve.runtime.tensorrt_module`.

Version differences are probed by attribute, never by parsing the version string alone:

* TensorRT <= 10.x is *weakly typed* by default: `BuilderFlag.FP16` / `BuilderFlag.INT8` let the builder
  pick lower-precision kernels, and `IBuilderConfig.int8_calibrator` takes an `IInt8Calibrator`.
* TensorRT 11.x removed those flags and the calibrator interfaces ("Removed Python APIs and
  Replacements", https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/
  tensorrt-10x-to-11x-python-api-reference.html): networks are always strongly typed and precision
  comes from the graph (casts, Q/DQ). `NetworkDefinitionCreationFlag.STRONGLY_TYPED` is kept but
  ignored in 11.0 (Builder page of the 11.0.0 Python API).
* TensorRT-RTX (the `tensorrt_rtx` module) follows the 10.x API without FP16/INT8 flags or calibrators
  and builds on a machine without a GPU ("CPU-Only AOT and TensorRT-RTX Engines",
  https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/inference-library/cpu-engines.html).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Protocol

from engine_builder.errors import BuildError
from serve.runtime.tensorrt_module import EXTRA, FLAVOURS, Flavour, import_tensorrt

CPU_BUILD_DEVICE = "cpu-build (TensorRT-RTX)"


class FeatureUnavailable(BuildError):
    """The installed TensorRT lacks a feature the build asked for."""


@dataclass(frozen=True)
class Features:
    """What the installed TensorRT can do, probed by attribute."""

    weak_typing: bool  # BuilderFlag.FP16 exists (TensorRT <= 10.x)
    int8_flag: bool  # BuilderFlag.INT8 exists
    calibrators: bool  # IInt8EntropyCalibrator2 + IBuilderConfig.int8_calibrator
    strongly_typed_flag: bool  # NetworkDefinitionCreationFlag.STRONGLY_TYPED exists (10.0+; ignored in 11)
    always_strongly_typed: bool  # TensorRT >= 11 or TensorRT-RTX without weak-typing flags
    version_compatible: bool  # BuilderFlag.VERSION_COMPATIBLE
    hardware_compatible: bool  # HardwareCompatibilityLevel.AMPERE_PLUS
    compute_capability_target: bool  # IBuilderConfig.set_compute_capability (TensorRT-RTX)
    optimization_level: bool  # IBuilderConfig.builder_optimization_level
    timing_cache: bool  # IBuilderConfig.create_timing_cache

    @classmethod
    def probe(cls, trt: ModuleType) -> Features:
        flags = getattr(trt, "BuilderFlag", None)
        net_flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
        config_cls = getattr(trt, "IBuilderConfig", None)
        weak = hasattr(flags, "FP16")
        return cls(
            weak_typing=weak,
            int8_flag=hasattr(flags, "INT8"),
            calibrators=hasattr(trt, "IInt8EntropyCalibrator2") and hasattr(config_cls, "int8_calibrator"),
            strongly_typed_flag=hasattr(net_flags, "STRONGLY_TYPED"),
            always_strongly_typed=not weak,
            version_compatible=hasattr(flags, "VERSION_COMPATIBLE"),
            hardware_compatible=hasattr(getattr(trt, "HardwareCompatibilityLevel", None), "AMPERE_PLUS"),
            compute_capability_target=hasattr(config_cls, "set_compute_capability"),
            optimization_level=hasattr(config_cls, "builder_optimization_level"),
            timing_cache=hasattr(config_cls, "create_timing_cache"),
        )


def require(available: bool, what: str, flavour: str, version: str, limit: str = "<= 10.x") -> None:
    """Raise `FeatureUnavailable` ("X needs TensorRT <= 10.x; found 11.4") unless `available`."""
    if not available:
        name = "TensorRT" if flavour == "tensorrt" else "TensorRT (not TensorRT-RTX)"
        raise FeatureUnavailable(f"{what} needs {name} {limit}; found {flavour} {version}")


class EngineBackend(Protocol):
    """A TensorRT flavour behind one interface: the builder (`engine_builder.build`) and runners use it."""

    flavour: Flavour
    trt: ModuleType
    features: Features

    @property
    def version(self) -> str: ...

    def create_network(self, builder: Any, strongly_typed: bool) -> Any:
        """An empty network, strongly typed when asked (always on TensorRT 11 / RTX)."""

    def configure_target(self, config: Any, compute_capabilities: tuple[str, ...]) -> None:
        """Point the build at its target GPUs (RTX: compute capabilities; full TensorRT: the current GPU)."""

    def device(self) -> tuple[str, str]:
        """(GPU name, compute capability "major.minor") the engine is built for / runs on."""

    def check_runtime_device(
        self, built_for: str, compute_capability: str, hardware_compatible: bool, current: tuple[str, str]
    ) -> None:
        """Raise EngineMismatch when an engine built for `built_for` cannot run on `current` (name, cc)."""


__all__ = [
    "CPU_BUILD_DEVICE",
    "EXTRA",
    "FLAVOURS",
    "EngineBackend",
    "FeatureUnavailable",
    "Features",
    "Flavour",
    "import_tensorrt",
    "require",
]
