"""The runtime's one place that imports TensorRT or TensorRT-RTX, and the GPU check of an engine.

The builder (`engine_builder.backends`) imports these too, so building and running agree on what a
flavour is, how its module is found, and which GPUs an engine's manifest allows.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Literal, Protocol, get_args

from drq.versions import parse_compute_capability
from serve.errors import EngineMismatch, MissingDependency, RunnerError

Flavour = Literal["tensorrt", "tensorrt_rtx"]
FLAVOURS: tuple[str, ...] = get_args(Flavour)
EXTRA: dict[str, str] = {"tensorrt": "tensorrt", "tensorrt_rtx": "rtx"}


def import_tensorrt(flavour: Flavour) -> ModuleType:
    """Import TensorRT or TensorRT-RTX on first use; nothing in drq needs it at import time.

    Raises:
        RunnerError: unknown flavour.
        MissingDependency: the package is not installed (with the pip extra to install).
    """
    if flavour not in FLAVOURS:
        raise RunnerError(f"backend {flavour!r}: unknown; choose from {', '.join(FLAVOURS)}")
    try:
        module = importlib.import_module(flavour)
    except ImportError as err:
        raise MissingDependency(
            f"building and running engines with --backend {flavour} needs the '{flavour}' "
            f"package (pip install 'drq[{EXTRA[flavour]}]')"
        ) from err
    # A namespace stub (e.g. the PyPI 'tensorrt' meta package whose libraries failed to download)
    # has no Builder.
    if not hasattr(module, "Builder"):
        raise MissingDependency(
            f"the installed '{flavour}' package has no Builder (an incomplete install); "
            f"reinstall it (pip install 'drq[{EXTRA[flavour]}]')"
        )
    return module


def check_runtime_device(
    flavour: str,
    built_for: str,
    compute_capability: str,
    hardware_compatible: bool,
    current: tuple[str, str],
) -> None:
    """Raise EngineMismatch when an engine built for `built_for` cannot run on `current` (name, cc).

    Full TensorRT engines run on the GPU they were built on, or on any Ampere+ GPU when built
    hardware-compatible; TensorRT-RTX engines run on the compute capabilities they were built for
    ("8.0+" = the portable default: 8.0, 8.6, 8.9 and 12.0 or later, see `rtx_default_runs_on`).
    """
    if flavour == "tensorrt_rtx":
        _check_rtx_device(compute_capability, current)
    else:
        _check_tensorrt_device(built_for, compute_capability, hardware_compatible, current)


def _check_tensorrt_device(
    built_for: str, compute_capability: str, hardware_compatible: bool, current: tuple[str, str]
) -> None:
    name, current_cc = current
    if hardware_compatible:
        # HardwareCompatibilityLevel.AMPERE_PLUS: any GPU of compute capability >= 8.0.
        if parse_compute_capability(current_cc) < (8, 0):
            raise EngineMismatch(
                f"engine built hardware-compatible (Ampere+); this GPU {name} is "
                f"sm {current_cc}; rebuild the engine here"
            )
        return
    if compute_capability and compute_capability != current_cc:
        raise EngineMismatch(
            f"engine built for {built_for} (sm {compute_capability}); this GPU is {name} "
            f"(sm {current_cc}); rebuild it here or build with --hardware-compatible"
        )


# Where a TensorRT-RTX engine built without targets runs. "CPU-Only AOT and TensorRT-RTX Engines"
# (https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/inference-library/cpu-engines.html): "by
# default, an engine built by TensorRT-RTX can be run on GPU devices with compute capability 8.0, 8.6,
# 8.9, 12.0, and later"; Turing (7.5) only when targeted. The support matrix
# (https://docs.nvidia.com/deeplearning/tensorrt-rtx/latest/getting-started/support-matrix.html, and
# .../support-matrix-1/1.5.html adding 12.1 GB10) lists no Hopper (9.0) and no datacenter Blackwell
# (10.x) or Thor (11.0): those are not "later" RTX GPUs, so "8.0+" must not pass them.
RTX_DEFAULT_TARGETS: tuple[tuple[int, int], ...] = ((8, 0), (8, 6), (8, 9))
RTX_LATER_FROM = (12, 0)


def rtx_default_runs_on(cc: tuple[int, int]) -> bool:
    """Whether a TensorRT-RTX engine built for the default targets runs on compute capability `cc`."""
    return cc in RTX_DEFAULT_TARGETS or cc >= RTX_LATER_FROM


def _check_rtx_device(compute_capability: str, current: tuple[str, str]) -> None:
    name, current_cc = current
    if not compute_capability:
        return
    if compute_capability.endswith("+"):
        cc = parse_compute_capability(current_cc)
        if cc < parse_compute_capability(compute_capability[:-1]) or not rtx_default_runs_on(cc):
            raise EngineMismatch(
                f"engine built for compute capability {compute_capability}; this GPU {name} is "
                f"sm {current_cc}"
            )
        return
    allowed = {parse_compute_capability(t) for t in compute_capability.split(",") if t.upper() != "CURRENT"}
    if allowed and parse_compute_capability(current_cc) not in allowed:
        raise EngineMismatch(
            f"engine built for compute capability {compute_capability}; this GPU {name} is "
            f"sm {current_cc}; rebuild with --compute-capability {current_cc}"
        )


class RuntimeBackend(Protocol):
    """What a runner needs of a TensorRT flavour (the builder's `EngineBackend` satisfies it too)."""

    flavour: Flavour
    trt: ModuleType

    @property
    def version(self) -> str: ...

    def check_runtime_device(
        self, built_for: str, compute_capability: str, hardware_compatible: bool, current: tuple[str, str]
    ) -> None: ...


@dataclass
class TensorRTRuntime:
    """An imported TensorRT or TensorRT-RTX module for running engines."""

    flavour: Flavour
    trt: ModuleType

    @property
    def version(self) -> str:
        return str(getattr(self.trt, "__version__", "unknown"))

    def check_runtime_device(
        self, built_for: str, compute_capability: str, hardware_compatible: bool, current: tuple[str, str]
    ) -> None:
        check_runtime_device(self.flavour, built_for, compute_capability, hardware_compatible, current)


def load_runtime(flavour: Flavour) -> TensorRTRuntime:
    """Import `flavour` now for running engines.

    Raises:
        MissingDependency: the module is not installed.
    """
    return TensorRTRuntime(flavour, import_tensorrt(flavour))
