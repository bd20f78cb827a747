"""Network definition, optimization profile, timing cache, builder config and builder.

Follows the Python API pages Builder, IBuilderConfig, INetworkDefinition, IOptimizationProfile,
ITimingCache and the Int8 calibrators (https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/
python-api/infer/Core/Builder.html and siblings). What the builder refuses or records:

* a strongly typed network with a precision builder flag (FP16/BF16/FP8/INT8) fails the build: in a
  strongly typed network precision comes from the graph ("Strongly Typed Networks",
  https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/precision-control.html; the
  Builder page's STRONGLY_TYPED: "Setting layer precision and layer output types is not allowed");
* VERSION_COMPATIBLE without EXCLUDE_LEAN_RUNTIME embeds the lean runtime in the plan, so the plan
  contains host code ("Version Compatibility", https://docs.nvidia.com/deeplearning/tensorrt/latest/
  inference-library/version-compatibility.html: "causes a copy of the lean runtime to be added to the
  plan"), which the runtime then only loads when allowed;
* each plugin layer is recorded with whether its `tensorrt.plugin` definition is AOT-only: an AOT
  plugin's kernel is embedded, so "the engine is independent of Python and the plugin source"
  ("Adding Custom Layers using the Python API (TensorRT >= 10.6)", https://docs.nvidia.com/
  deeplearning/tensorrt/latest/inference-library/plugins-python.html); a JIT (or JIT and AOT, where
  TensorRT picks by the PREFER_*_PYTHON_PLUGINS network flag this fake leaves out) plugin is not.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.tensorrt.logger import ILogger, check_logger
from tests.fakes.tensorrt.state import Fake, bind

PLAN_MAGIC = b"FAKEPLAN"
INT8_ELIGIBLE = frozenset(
    "Conv ConvTranspose Add Concat MaxPool AveragePool GlobalAveragePool Relu LeakyRelu Sigmoid Mul "
    "DepthToSpace Resize Clip".split()
)
"""ONNX ops whose TensorRT layers have INT8 implementations (convolution, elementwise, concatenation,
pooling, activation, shuffle, resize): what `_int8_fallbacks` checks."""
PRECISION_FLAGS = ("FP16", "BF16", "FP8", "INT8")


class ITensor:
    def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self.layers: list[tuple[str, str]] = []  # (kind, op type or plugin "namespace::name@version")
        # top-level builtin nodes: (name, op type, activation inputs, outputs), and ONNX types by tensor
        self.nodes: list[tuple[str, str, list[str], list[str]]] = []
        self.tensor_types: dict[str, int] = {}

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def plugins(self) -> list[tuple[str, str, str]]:
        """(name, version, namespace) of every plugin layer."""
        out = []
        for kind, what in self.layers:
            if kind == "plugin":
                namespace, _, rest = what.partition("::")
                name, _, version = rest.partition("@")
                out.append((name, version, namespace))
        return out

    @property
    def num_inputs(self) -> int:
        return len(self._inputs)

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def add_parsed_input(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        """What the ONNX parser adds for a graph input (not a TensorRT API)."""
        self._inputs.append(ITensor(name, shape, dtype))

    def add_parsed_output(self, name: str, dtype: Any) -> None:
        """What the ONNX parser marks as a network output (not a TensorRT API)."""
        self._outputs.append(ITensor(name, (), dtype))


class IOptimizationProfile:
    fake: Fake

    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 (documented names)
        dims = [tuple(int(d) for d in s) for s in (min, opt, max)]
        if not all(a <= b <= c for a, b, c in zip(*dims, strict=True)):
            raise ValueError("min <= opt <= max violated")
        self.fake.state.record("set_shape", input, *dims)
        self.shapes[input] = tuple(dims)


class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self.data = bytes(data)

    def serialize(self) -> bytes:
        return self.data + b"|timings"

    def combine(self, input_cache: ITimingCache, ignore_mismatch: bool) -> bool:
        return True

    def reset(self) -> bool:
        self.data = b""
        return True


class IBuilderConfig:
    fake: Fake

    def __init__(self) -> None:
        self.profiles: list[IOptimizationProfile] = []
        self._flags: set[Any] = set()
        self._opt_level = 3
        self._hw = self.fake.mod.HardwareCompatibilityLevel.NONE
        self._timing: ITimingCache | None = None
        self._calibrator: Any = None
        self._ncc = 0
        self._verbosity = self.fake.mod.ProfilingVerbosity.LAYER_NAMES_ONLY

    @property
    def profiling_verbosity(self) -> Any:
        return self._verbosity

    @profiling_verbosity.setter
    def profiling_verbosity(self, value: Any) -> None:
        if not isinstance(value, self.fake.mod.ProfilingVerbosity):
            raise TypeError("profiling_verbosity must be a ProfilingVerbosity")
        self.fake.state.record("profiling_verbosity", value.name)
        self._verbosity = value

    def set_flag(self, flag: Any) -> None:
        if not isinstance(flag, self.fake.mod.BuilderFlag):
            raise TypeError("flag must be a BuilderFlag")
        self.fake.state.record("set_flag", flag.name)
        self._flags.add(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self._flags

    def clear_flag(self, flag: Any) -> None:
        self._flags.discard(flag)

    def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
        self.fake.state.record("set_memory_pool_limit", pool.name, int(pool_size))

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    @property
    def builder_optimization_level(self) -> int:
        return self._opt_level

    @builder_optimization_level.setter
    def builder_optimization_level(self, value: int) -> None:
        self.fake.state.record("builder_optimization_level", int(value))
        self._opt_level = int(value)

    @property
    def hardware_compatibility_level(self) -> Any:
        return self._hw

    @hardware_compatibility_level.setter
    def hardware_compatibility_level(self, value: Any) -> None:
        self.fake.state.record("hardware_compatibility_level", value.name)
        self._hw = value

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        self.fake.state.record("create_timing_cache", bytes(serialized_timing_cache))
        return ITimingCache(serialized_timing_cache)

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self.fake.state.record("set_timing_cache", bool(ignore_mismatch))
        if self.fake.state.refuse_timing_cache and not ignore_mismatch:
            return False
        self._timing = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._timing

    def flag_names(self) -> set[str]:
        """Names of the set flags (not a TensorRT API)."""
        return {f.name for f in self._flags}


class IInt8Calibrator:
    def __init__(self) -> None:
        self._initialised = True


class IInt8EntropyCalibrator2(IInt8Calibrator):
    pass


class IInt8MinMaxCalibrator(IInt8Calibrator):
    pass


class WeakConfig(IBuilderConfig):
    """TensorRT <= 10.x: IBuilderConfig.int8_calibrator and set_calibration_profile (IBuilderConfig and
    Int8 pages; both removed in 11.x)."""

    @property
    def int8_calibrator(self) -> Any:
        return self._calibrator

    @int8_calibrator.setter
    def int8_calibrator(self, value: Any) -> None:
        if not isinstance(value, IInt8Calibrator) or not getattr(value, "_initialised", False):
            raise TypeError("int8_calibrator must be an IInt8Calibrator whose __init__ was called")
        self.fake.state.record("int8_calibrator", type(value).__mro__[1].__name__)
        self._calibrator = value

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self.fake.state.record("set_calibration_profile", dict(profile.shapes))
        return bool(profile.shapes)


class RTXConfig(IBuilderConfig):
    """TensorRT-RTX: num_compute_capabilities + set_compute_capability(ComputeCapability, index)
    ("CPU-Only AOT and TensorRT-RTX Engines", tensorrt-rtx/latest/inference-library/cpu-engines.html)."""

    @property
    def num_compute_capabilities(self) -> int:
        return self._ncc

    @num_compute_capabilities.setter
    def num_compute_capabilities(self, value: int) -> None:
        self.fake.state.record("num_compute_capabilities", int(value))
        self._ncc = int(value)

    def set_compute_capability(self, compute_capability: Any, index: int) -> bool:
        self.fake.state.record("set_compute_capability", compute_capability.name, int(index))
        return 0 <= index < self._ncc and compute_capability != self.fake.mod.ComputeCapability.NONE


def _plugin_is_aot(name: str, namespace: str) -> bool:
    """Whether the `tensorrt.plugin` stand-in defines this plugin with an AOT implementation only."""
    from tests.fakes import tensorrt_plugin

    definition = tensorrt_plugin.REGISTRY.get(f"{namespace}::{name}")
    return definition is not None and definition.aot_impl_func is not None and definition.impl_func is None


def _int8_fallbacks(fake: Fake, network: INetworkDefinition, cache: bytes, logger: Any) -> None:
    """Implicit INT8: a layer runs in INT8 only when every tensor it reads and writes has a scale.

    TensorRT logs, per tensor without one, "Missing scale and zero-point for tensor <name>, expect
    fall back to non-int8 implementation for any layer consuming or producing given tensor" (the
    warning of TensorRT 8.x-10.x implicit INT8 builds as quoted in NVIDIA/TensorRT issues #2462 and
    #4058; the developer guide's implicit quantization needs a dynamic range on every tensor a layer
    reads and writes for an INT8 implementation). Recorded as ("int8_fallback", node).
    """
    lines = bytes(cache).decode().splitlines()[1:]
    scaled = {line.rpartition(": ")[0] for line in lines}
    missing_logged: set[str] = set()
    for name, op, inputs, outputs in network.nodes:
        if op not in INT8_ELIGIBLE:
            continue
        missing = [t for t in inputs + outputs if t not in scaled]
        for tensor in missing:
            if tensor not in missing_logged:
                missing_logged.add(tensor)
                logger.log(
                    ILogger.Severity.WARNING,
                    f"Missing scale and zero-point for tensor {tensor}, expect fall back to non-int8 "
                    "implementation for any layer consuming or producing given tensor",
                )
        if missing:
            fake.state.record("int8_fallback", name)


def _format(elem_type: int) -> str:
    # "Format/Datatype" strings as the engine inspector writes them (developer guide, Engine Inspector)
    return {1: "Row major linear FP32 format", 10: "Row major linear FP16 format"}.get(
        elem_type, "Row major linear Int8 format" if elem_type in (2, 3) else "Unknown format"
    )


def _layer_information(fake: Fake, network: INetworkDefinition, verbosity: Any) -> Any:
    """What the inspector will report: names only, nothing, or layer details by verbosity."""
    if verbosity == fake.mod.ProfilingVerbosity.NONE:
        return []
    if verbosity == fake.mod.ProfilingVerbosity.LAYER_NAMES_ONLY:
        return [name for name, *_ in network.nodes]
    types = network.tensor_types
    return [
        {
            "Name": name,
            "LayerType": op,
            "Inputs": [{"Name": t, "Format/Datatype": _format(types.get(t, 0))} for t in inputs],
            "Outputs": [{"Name": t, "Format/Datatype": _format(types.get(t, 0))} for t in outputs],
        }
        for name, op, inputs, outputs in network.nodes
    ]


class Builder:
    fake: Fake

    def __init__(self, logger: ILogger) -> None:
        check_logger(logger)
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        self.fake.state.record("create_network", int(flags))
        return self.fake.mod.INetworkDefinition(int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return self.fake.mod.IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return self.fake.mod.IOptimizationProfile()

    def _refusal(self, network: INetworkDefinition, config: IBuilderConfig) -> str | None:
        if self.fake.state.fail_build:
            return self.fake.state.fail_build
        strongly_typed = network.flags & (
            1 << int(self.fake.mod.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        )
        precision = sorted(config.flag_names() & set(PRECISION_FLAGS))
        if strongly_typed and precision:
            return (
                f"Error Code 4: API Usage Error (BuilderFlag {', '.join(precision)} set on a strongly "
                "typed network; its precision comes from the graph)"
            )
        return None

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> Any:
        self.fake.state.record("build_serialized_network")
        refusal = self._refusal(network, config)
        if refusal:
            self.logger.log(ILogger.Severity.ERROR, refusal)
            return None
        cal = config._calibrator
        if cal is not None:  # what TensorRT does first: ask for the cache
            cache = cal.read_calibration_cache()
            self.fake.state.record("read_calibration_cache", cache)
            if "INT8" in config.flag_names():
                _int8_fallbacks(self.fake, network, cache, self.logger)
        tensor = network.get_input(0)
        flags = config.flag_names()
        payload = {
            "input": tensor.name,
            "output": network._outputs[0].name,
            "profile": config.profiles[0].shapes[tensor.name],
            "scale": self.fake.state.scale,
            "dtype": int(tensor.dtype),
            "plugins": [(n, v, ns, _plugin_is_aot(n, ns)) for n, v, ns in network.plugins()],
            "host_code": "VERSION_COMPATIBLE" in flags and "EXCLUDE_LEAN_RUNTIME" not in flags,
            "layers": _layer_information(self.fake, network, config._verbosity),
        }
        return memoryview(PLAN_MAGIC + json.dumps(payload).encode())


def add_builder(fake: Fake) -> None:
    mod = fake.mod
    config = WeakConfig if fake.weak else (RTXConfig if fake.rtx else IBuilderConfig)
    mod.IBuilderConfig = bind(config, fake)
    # exported like the real module's classes, so tests can compare signatures
    mod.INetworkDefinition = INetworkDefinition
    mod.IOptimizationProfile = bind(IOptimizationProfile, fake)
    mod.ITimingCache = ITimingCache
    mod.Builder = bind(Builder, fake)
    if fake.weak:
        mod.IInt8Calibrator = IInt8Calibrator
        mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
        mod.IInt8MinMaxCalibrator = IInt8MinMaxCalibrator
