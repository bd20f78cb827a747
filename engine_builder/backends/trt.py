"""Full TensorRT (10.x weakly/strongly typed, 11.x strongly typed) behind `EngineBackend`."""

from __future__ import annotations

from types import ModuleType
from typing import Any

from engine_builder.backends.base import (
    CPU_BUILD_DEVICE,
    EngineBackend,
    Features,
    Flavour,
    import_tensorrt,
    require,
)
from serve.runtime.tensorrt_module import check_runtime_device


class TensorRTBackend:
    """TensorRT 10.x / 11.x: builds for (and runs on) the GPU of this machine."""

    flavour: Flavour = "tensorrt"

    def __init__(self, trt: ModuleType) -> None:
        self.trt = trt
        self.features = Features.probe(trt)
        self._device: tuple[str, str] | None = None

    @property
    def version(self) -> str:
        return str(getattr(self.trt, "__version__", "unknown"))

    def create_network(self, builder: Any, strongly_typed: bool) -> Any:
        # Python API, Builder.create_network(flags):
        # "pass 1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)".
        # On 11.x the flag is accepted and ignored (always strongly typed), so setting it is harmless there.
        flags = 0
        if strongly_typed or self.features.always_strongly_typed:
            if self.features.strongly_typed_flag:
                flags |= 1 << int(self.trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        elif not self.features.weak_typing:
            require(False, "a weakly typed network", self.flavour, self.version)
        return builder.create_network(flags)

    def configure_target(self, config: Any, compute_capabilities: tuple[str, ...]) -> None:
        if compute_capabilities:
            require(
                self.features.compute_capability_target,
                "--compute-capability (build for another GPU)",
                self.flavour,
                self.version,
                "-RTX",
            )
            set_compute_capabilities(self.trt, config, compute_capabilities)

    def device(self) -> tuple[str, str]:
        if self._device is None:
            from serve.runtime.cuda import current_device

            self._device = current_device()
        return self._device

    def check_runtime_device(
        self, built_for: str, compute_capability: str, hardware_compatible: bool, current: tuple[str, str]
    ) -> None:
        check_runtime_device(self.flavour, built_for, compute_capability, hardware_compatible, current)


def set_compute_capabilities(trt: ModuleType, config: Any, targets: tuple[str, ...]) -> None:
    """IBuilderConfig.num_compute_capabilities + set_compute_capability(ComputeCapability.SMxx, i) (RTX).

    Raises:
        FeatureUnavailable: a target the installed module does not know (lists the valid ones).
    """
    from engine_builder.backends.base import FeatureUnavailable

    enum = trt.ComputeCapability
    valid = [n for n in getattr(enum, "__members__", {}) if n.startswith("SM")] + ["CURRENT"]
    values = []
    for target in targets:
        key = target.upper().replace(".", "").replace("SM_", "SM")
        key = key if key.startswith(("SM", "CURRENT")) else f"SM{key}"
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


def get_backend(flavour: Flavour) -> EngineBackend:
    """The backend of `flavour`, importing its module now.

    Raises:
        MissingDependency: the module is not installed.
    """
    trt = import_tensorrt(flavour)
    if flavour == "tensorrt_rtx":
        from engine_builder.backends.rtx import RTXBackend

        return RTXBackend(trt)
    return TensorRTBackend(trt)


__all__ = ["CPU_BUILD_DEVICE", "TensorRTBackend", "get_backend", "set_compute_capabilities"]
