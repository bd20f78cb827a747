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
from engine_builder.backends.rtx import RTXBackend, set_compute_capabilities
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


def get_backend(flavour: Flavour) -> EngineBackend:
    """The backend of `flavour`, importing its module now.

    Raises:
        MissingDependency: the module is not installed.
    """
    trt = import_tensorrt(flavour)
    if flavour == "tensorrt_rtx":
        return RTXBackend(trt)
    return TensorRTBackend(trt)


__all__ = ["CPU_BUILD_DEVICE", "TensorRTBackend", "get_backend", "set_compute_capabilities"]
