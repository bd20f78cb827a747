"""TensorRT-RTX behind `EngineBackend`: builds ahead of time on the CPU, JIT-compiles on the RTX GPU.

"CPU-Only AOT and TensorRT-RTX Engines" (TensorRT-RTX docs, inference-library/cpu-engines.html): a
build needs no GPU; by default the engine runs on compute capability 8.0, 8.6, 8.9, 12.0 and later;
`IBuilderConfig.num_compute_capabilities` + `set_compute_capability(ComputeCapability.SMxx, index)`
narrow (or, for SM75 Turing, widen) the targets. There is no Hopper (sm 9.0) target, no INT8/FP16
builder flags and no calibrator (precision comes from the graph).
"""

from __future__ import annotations

from dataclasses import replace
from types import ModuleType
from typing import Any

from drq.versions import VersionError, module_version, parse_compute_capability
from engine_builder.backends.base import CPU_BUILD_DEVICE, Features, FeatureUnavailable, Flavour
from serve.runtime.tensorrt_module import check_runtime_device

PORTABLE = "8.0+"
"""Manifest compute capability of a default RTX build: any GPU of sm 8.0 or later."""


def set_compute_capabilities(trt: ModuleType, config: Any, targets: tuple[str, ...]) -> None:
    """IBuilderConfig.num_compute_capabilities + set_compute_capability(ComputeCapability.SMxx, i) (RTX).

    Each target is "CURRENT" or a compute capability in any form `drq.versions.parse_compute_capability`
    reads (8.6, 86, sm_86); the enum has one member per supported target (1.7: SM75, SM80, SM86,
    SM89, SM120, SM121), so Hopper (9.0) and datacenter Blackwell (10.0) are refused here.

    Raises:
        FeatureUnavailable: a target the installed module does not know (lists the valid ones).
    """
    enum = trt.ComputeCapability
    valid = [n for n in getattr(enum, "__members__", {}) if n.startswith("SM")] + ["CURRENT"]
    values = []
    for target in targets:
        try:
            major, minor = (0, 0) if target.strip().upper() == "CURRENT" else parse_compute_capability(target)
        except VersionError as err:
            raise FeatureUnavailable(f"--compute-capability: {err}; choose from {', '.join(valid)}") from err
        key = f"SM{major}{minor}" if major else "CURRENT"
        if not hasattr(enum, key):
            raise FeatureUnavailable(
                f"compute capability {target!r}: not a target of this TensorRT-RTX; choose "
                f"from {', '.join(valid)}"
            )
        values.append(getattr(enum, key))
    config.num_compute_capabilities = len(values)
    for index, value in enumerate(values):
        if not config.set_compute_capability(value, index):
            raise FeatureUnavailable(f"compute capability {targets[index]!r}: rejected by TensorRT-RTX")


class RTXBackend:
    """TensorRT-RTX: the device is whatever the build targets, not this machine's GPU."""

    flavour: Flavour = "tensorrt_rtx"

    def __init__(self, trt: ModuleType) -> None:
        self.trt = trt
        features = Features.probe(trt)
        if module_version(trt) >= (1, 2):
            # The bindings keep create/set_timing_cache but warn "Deprecated in TensorRT-RTX 1.2. Timing cache
            # operations are no-ops in TensorRT-RTX" (measured with 1.7.1): refuse rather than pretend.
            features = replace(features, timing_cache=False)
        # Measured with 1.7.1 on the CPU: VERSION_COMPATIBLE fails the build ("Unable to load library:
        # libnvinfer_lean.so.1") and hardware_compatibility_level only logs
        # "setHardwareCompatibilityLevel() is unsupported in TensorRT-RTX"; RTX engines are portable
        # through compute-capability targets instead.
        features = replace(features, version_compatible=False, hardware_compatible=False)
        self.features = features
        self._targets: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        return str(getattr(self.trt, "__version__", "unknown"))

    def create_network(self, builder: Any, strongly_typed: bool) -> Any:
        # RTX networks are strongly typed whatever the flag (no FP16/INT8 builder flags exist).
        flags = 0
        if self.features.strongly_typed_flag:
            flags |= 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        return builder.create_network(flags)

    def configure_target(self, config: Any, compute_capabilities: tuple[str, ...]) -> None:
        if compute_capabilities:
            set_compute_capabilities(self.trt, config, compute_capabilities)
        self._targets = tuple(compute_capabilities)

    def device(self) -> tuple[str, str]:
        return CPU_BUILD_DEVICE, ",".join(self._targets) if self._targets else PORTABLE

    def check_runtime_device(
        self, built_for: str, compute_capability: str, hardware_compatible: bool, current: tuple[str, str]
    ) -> None:
        check_runtime_device(self.flavour, built_for, compute_capability, hardware_compatible, current)
