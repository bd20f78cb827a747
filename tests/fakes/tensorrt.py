"""Stand-in for the `tensorrt` (10.x / 11.x) and `tensorrt_rtx` Python modules: builder, ONNX parser,
runtime and execution context, with the documented parameter names, recording every call.

Written against the TensorRT Python API pages (Builder, IBuilderConfig, OnnxParser, ITimingCache,
IOptimizationProfile, Runtime, ICudaEngine, IExecutionContext, Int8 calibrators) and the 10.x -> 11.x
migration page ("Removed Python APIs and Replacements"):

* 10.x: BuilderFlag has FP16/INT8/VERSION_COMPATIBLE, IInt8EntropyCalibrator2/IInt8MinMaxCalibrator
  exist, IBuilderConfig.int8_calibrator exists.
* 11.x: no FP16/INT8 flags, no calibrators, no int8_calibrator; STRONGLY_TYPED still exists (ignored).
* rtx: like 11.x for precision, plus ComputeCapability / set_compute_capability.

Parameter names follow the docs, so a call with a wrong keyword fails with TypeError as the real
pybind11 bindings do. `execute_async_v3` reads the input from the fake CUDA memory
(`tests.fakes.cuda`) and writes a nearest-neighbour x`SCALE` upscale of it to the output address, so a
runner test can check the bytes that come back.

The ONNX parser dispatches every node the way onnx-tensorrt's `parseNode` (ModelImporter.cpp) does in
the three generations of that code, chosen by the module version, and records one network layer per
imported op (`network.layers`: ("builtin" | "plugin" | "function", op type or plugin id)):

* <= 10.6: builtin importer, else a local function of that name, else the FallbackPluginImporter;
* 10.7 - 10.14: as above, but a local function whose node finds a registered plugin
  (`isNodeInPluginRegistry`: op_type, attribute `plugin_version` (default "1"), `plugin_namespace`
  (default "")) is imported as the plugin;
* 10.15+, 11.x and TensorRT-RTX: a node carrying `plugin_namespace` whose plugin is registered is
  imported as the plugin first; otherwise builtin, local function, fallback.

The fallback looks the creator up by (op_type, plugin_version, plugin_namespace), then with the node's
domain as namespace (10.10+); none found is the parser's "Plugin not found" error. Plugin creators live
in `get_plugin_registry()` (the `tensorrt.plugin` stand-in registers there); an engine remembers the
plugins it holds and `deserialize_cuda_engine` fails, as TensorRT does, when one is not registered.
"""

from __future__ import annotations

import enum
import json
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper

INT8_ELIGIBLE = frozenset(
    "Conv ConvTranspose Add Concat MaxPool AveragePool GlobalAveragePool Relu LeakyRelu Sigmoid Mul "
    "DepthToSpace Resize Clip".split()
)
"""ONNX ops whose TensorRT layers have INT8 implementations (convolution, elementwise, concatenation,
pooling, activation, shuffle, resize): what `_int8_fallbacks` checks."""


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass
class State:
    calls: list[Call] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    fail_build: str | None = None  # logged as ERROR and build returns None
    refuse_timing_cache: bool = False  # set_timing_cache returns False (cache of another device/version)
    scale: int = 2
    memory: Any = None  # tests.fakes.cuda.Memory, for execute_async_v3

    def record(self, name: str, *args: Any) -> None:
        self.calls.append(Call(name, args))

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]


def make_tensorrt(
    version: str = "10.13.0.35", rtx: bool = False, state: State | None = None
) -> types.ModuleType:
    """A fresh fake module; `module.STATE` holds the recorded calls and knobs."""
    state = state or State()
    major = int(version.split(".")[0])
    weak = major < 11 and not rtx
    mod = types.ModuleType("tensorrt_rtx" if rtx else "tensorrt")
    mod.__version__ = version
    mod.STATE = state

    flag_names = ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "REFIT", "DEBUG"]
    if weak:
        flag_names = ["FP16", "INT8", "BF16", "FP8", "OBEY_PRECISION_CONSTRAINTS", *flag_names]
    mod.BuilderFlag = enum.IntEnum("BuilderFlag", flag_names, start=0)
    mod.NetworkDefinitionCreationFlag = enum.IntEnum(
        "NetworkDefinitionCreationFlag", ["STRONGLY_TYPED"], start=1
    )
    mod.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "TACTIC_DRAM"], start=0)
    mod.HardwareCompatibilityLevel = enum.IntEnum(
        "HardwareCompatibilityLevel", ["NONE", "AMPERE_PLUS", "SAME_COMPUTE_CAPABILITY"], start=0
    )
    mod.TensorIOMode = enum.IntEnum("TensorIOMode", ["NONE", "INPUT", "OUTPUT"], start=0)
    mod.DataType = enum.IntEnum("DataType", ["FLOAT", "HALF", "INT8", "INT32"], start=0)
    mod.float32, mod.float16 = mod.DataType.FLOAT, mod.DataType.HALF
    # IBuilderConfig.profiling_verbosity / EngineInspector (Python API pages "EngineInspector",
    # "ProfilingVerbosity"): the default LAYER_NAMES_ONLY gives names only, DETAILED layer parameters.
    mod.ProfilingVerbosity = enum.IntEnum(
        "ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"], start=0
    )
    mod.LayerInformationFormat = enum.IntEnum("LayerInformationFormat", ["ONELINE", "JSON"], start=0)
    if rtx:
        mod.ComputeCapability = enum.IntEnum(
            "ComputeCapability", ["NONE", "CURRENT", "SM75", "SM80", "SM86", "SM89", "SM120"], start=0
        )

    def nptype(trt_type: Any) -> type:
        return {
            mod.DataType.FLOAT: np.float32,
            mod.DataType.HALF: np.float16,
            mod.DataType.INT8: np.int8,
            mod.DataType.INT32: np.int32,
        }[trt_type]

    mod.nptype = nptype

    class ILogger:
        class Severity(enum.IntEnum):
            INTERNAL_ERROR = 0
            ERROR = 1
            WARNING = 2
            INFO = 3
            VERBOSE = 4

        def __init__(self) -> None:
            self._initialised = True

        def log(self, severity: Any, msg: str) -> None:  # overridden by subclasses
            pass

    class Logger(ILogger):
        WARNING = ILogger.Severity.WARNING
        ERROR = ILogger.Severity.ERROR

        def __init__(self, min_severity: Any = ILogger.Severity.WARNING) -> None:
            super().__init__()
            self.min_severity = min_severity

    mod.ILogger, mod.Logger = ILogger, Logger

    def _logger_ok(logger: Any) -> None:
        if not isinstance(logger, ILogger) or not getattr(logger, "_initialised", False):
            raise TypeError("logger must be an ILogger whose __init__ was called")

    class ITensor:
        def __init__(self, name: str, shape: tuple[int, ...], dtype: Any) -> None:
            self.name, self.shape, self.dtype = name, shape, dtype

    class INetworkDefinition:
        def __init__(self, flags: int) -> None:
            self.flags = flags
            self._inputs: list[ITensor] = []
            self._outputs: list[ITensor] = []
            self.layers: list[tuple[str, str]] = []  # (kind, op type or plugin "namespace::name")
            # top-level builtin nodes: (name, op type, activation inputs, outputs, {tensor: ONNX elem type})
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

    class ParserError:
        def __init__(self, text: str) -> None:
            self._text = text

        def __str__(self) -> str:
            return self._text

        def desc(self) -> str:
            return self._text

    class PluginRegistry:
        """IPluginRegistry: creators keyed by (name, version, namespace)."""

        def __init__(self) -> None:
            self._creators: dict[tuple[str, str, str], Any] = {}

        def register_creator(self, creator: Any, plugin_namespace: str = "") -> bool:
            key = (str(creator.name), str(creator.plugin_version), str(plugin_namespace))
            if key in self._creators:
                return False
            state.record("register_creator", *key)
            self._creators[key] = creator
            return True

        def get_creator(self, type: str, version: str, plugin_namespace: str = "") -> Any:  # noqa: A002
            return self._creators.get((type, version, plugin_namespace))

        @property
        def all_creators(self) -> list[Any]:
            return list(self._creators.values())

    registry = PluginRegistry()
    mod.get_plugin_registry = lambda: registry
    parts = [int(p) for p in version.split(".")[:2]]
    generation = (
        "override"
        if rtx or tuple(parts) >= (10, 15)
        else ("prefer_plugin" if tuple(parts) >= (10, 7) else "function_first")
    )

    def _str_attr(node: onnx.NodeProto, name: str, default: str) -> str:
        for attr in node.attribute:
            if attr.name == name:
                value = helper.get_attribute_value(attr)
                return value.decode() if isinstance(value, bytes) else str(value)
        return default

    def _plugin_key(node: onnx.NodeProto, fallback: bool) -> tuple[str, str, str] | None:
        """The registered creator a node maps to (isNodeInPluginRegistry / FallbackPluginImporter)."""
        version_attr = _str_attr(node, "plugin_version", "1")
        namespaces = [_str_attr(node, "plugin_namespace", "")]
        if fallback and (tuple(parts) >= (10, 10) or rtx):
            namespaces.append(node.domain)  # 10.10: "fallback importer also reads its namespace from domain"
        for namespace in namespaces:
            if registry.get_creator(node.op_type, version_attr, namespace) is not None:
                return node.op_type, version_attr, namespace
        return None

    def _import_node(
        node: onnx.NodeProto, functions: dict[str, onnx.FunctionProto], layers: list[tuple[str, str]]
    ) -> str | None:
        """Append the node's layers; returns an error message, or None."""
        builtin = node.domain in ("", "ai.onnx")
        is_plugin_node = any(a.name == "plugin_namespace" for a in node.attribute)
        if generation == "override" and is_plugin_node and _plugin_key(node, False) is not None:
            kind = "plugin"
        elif builtin:
            kind = "builtin"
        elif node.op_type in functions:
            kind = "function"
            if generation == "prefer_plugin" and _plugin_key(node, False) is not None:
                kind = "plugin"
        else:
            kind = "plugin"
        if kind == "builtin":
            layers.append(("builtin", node.op_type))
        elif kind == "function":
            for inner in functions[node.op_type].node:  # LocalFunctionImporter: the body, node by node
                error = _import_node(inner, functions, layers)
                if error:
                    return error
        else:
            key = _plugin_key(node, True)
            if key is None:
                return (
                    f"In node -1 with name: {node.name} and operator: {node.op_type} "
                    '(checkFallbackPluginImporter): INVALID_NODE: creator && "Plugin not found, are the '
                    'plugin name, version, and namespace correct?"'
                )
            layers.append(("plugin", f"{key[2]}::{key[0]}@{key[1]}"))
        return None

    def _record_nodes(network: INetworkDefinition, proto: onnx.ModelProto, init: set[str]) -> None:
        """The builtin nodes with their activation tensors and ONNX types (for INT8 scales, the inspector)."""
        inferred = onnx.shape_inference.infer_shapes(proto)
        for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            network.tensor_types[vi.name] = vi.type.tensor_type.elem_type
        for node in proto.graph.node:
            if node.domain in ("", "ai.onnx") and node.op_type != "Constant":
                inputs = [t for t in node.input if t and t not in init]
                network.nodes.append((node.name, node.op_type, inputs, list(node.output)))

    class OnnxParser:
        def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
            _logger_ok(logger)
            self.network, self._errors = network, []

        def parse(self, model: bytes, path: str | None = None) -> bool:
            state.record("parse", len(model), path)
            proto = onnx.load_from_string(bytes(model))
            state.record("parsed_functions", len(proto.functions))
            if state.parse_errors:
                self._errors = [ParserError(e) for e in state.parse_errors]
                return False
            functions = {fn.name: fn for fn in proto.functions}
            for node in proto.graph.node:
                error = _import_node(node, functions, self.network.layers)
                if error:
                    self._errors.append(ParserError(error))
            state.record("layers", list(self.network.layers))
            if self._errors:
                return False
            init = {t.name for t in proto.graph.initializer}
            _record_nodes(self.network, proto, init)
            for vi in proto.graph.input:
                if vi.name in init:
                    continue
                dims = tuple(
                    d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim
                )
                dtype = mod.DataType.HALF if vi.type.tensor_type.elem_type == 10 else mod.DataType.FLOAT
                self.network._inputs.append(ITensor(vi.name, dims, dtype))
            for vi in proto.graph.output:
                self.network._outputs.append(ITensor(vi.name, (), mod.DataType.FLOAT))
            return True

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int) -> ParserError:
            return self._errors[index]

    mod.OnnxParser = OnnxParser

    class IOptimizationProfile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 (documented names)
            dims = [tuple(int(d) for d in s) for s in (min, opt, max)]
            if not all(a <= b <= c for a, b, c in zip(*dims, strict=True)):
                raise ValueError("min <= opt <= max violated")
            state.record("set_shape", input, *dims)
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
        def __init__(self) -> None:
            self.profiles: list[IOptimizationProfile] = []
            self._flags: set[Any] = set()
            self._opt_level = 3
            self._hw = mod.HardwareCompatibilityLevel.NONE
            self._timing: ITimingCache | None = None
            self._calibrator: Any = None
            self._ncc = 0
            self._verbosity = mod.ProfilingVerbosity.LAYER_NAMES_ONLY

        @property
        def profiling_verbosity(self) -> Any:
            return self._verbosity

        @profiling_verbosity.setter
        def profiling_verbosity(self, value: Any) -> None:
            if not isinstance(value, mod.ProfilingVerbosity):
                raise TypeError("profiling_verbosity must be a ProfilingVerbosity")
            state.record("profiling_verbosity", value.name)
            self._verbosity = value

        def set_flag(self, flag: Any) -> None:
            if not isinstance(flag, mod.BuilderFlag):
                raise TypeError("flag must be a BuilderFlag")
            state.record("set_flag", flag.name)
            self._flags.add(flag)

        def get_flag(self, flag: Any) -> bool:
            return flag in self._flags

        def clear_flag(self, flag: Any) -> None:
            self._flags.discard(flag)

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            state.record("set_memory_pool_limit", pool.name, int(pool_size))

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            self.profiles.append(profile)
            return len(self.profiles) - 1

        @property
        def builder_optimization_level(self) -> int:
            return self._opt_level

        @builder_optimization_level.setter
        def builder_optimization_level(self, value: int) -> None:
            state.record("builder_optimization_level", int(value))
            self._opt_level = int(value)

        @property
        def hardware_compatibility_level(self) -> Any:
            return self._hw

        @hardware_compatibility_level.setter
        def hardware_compatibility_level(self, value: Any) -> None:
            state.record("hardware_compatibility_level", value.name)
            self._hw = value

        def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
            state.record("create_timing_cache", bytes(serialized_timing_cache))
            return ITimingCache(serialized_timing_cache)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            state.record("set_timing_cache", bool(ignore_mismatch))
            if state.refuse_timing_cache and not ignore_mismatch:
                return False
            self._timing = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self._timing

    if weak:

        def _get_cal(self: IBuilderConfig) -> Any:
            return self._calibrator

        def _set_cal(self: IBuilderConfig, value: Any) -> None:
            if not isinstance(value, IInt8Calibrator) or not getattr(value, "_initialised", False):
                raise TypeError("int8_calibrator must be an IInt8Calibrator whose __init__ was called")
            state.record("int8_calibrator", type(value).__mro__[1].__name__)
            self._calibrator = value

        IBuilderConfig.int8_calibrator = property(_get_cal, _set_cal)

        def set_calibration_profile(self: IBuilderConfig, profile: IOptimizationProfile) -> bool:
            state.record("set_calibration_profile", dict(profile.shapes))
            return bool(profile.shapes)

        IBuilderConfig.set_calibration_profile = set_calibration_profile

        class IInt8Calibrator:
            def __init__(self) -> None:
                self._initialised = True

        class IInt8EntropyCalibrator2(IInt8Calibrator):
            pass

        class IInt8MinMaxCalibrator(IInt8Calibrator):
            pass

        mod.IInt8Calibrator = IInt8Calibrator
        mod.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
        mod.IInt8MinMaxCalibrator = IInt8MinMaxCalibrator

    if rtx:

        def _get_ncc(self: IBuilderConfig) -> int:
            return self._ncc

        def _set_ncc(self: IBuilderConfig, value: int) -> None:
            state.record("num_compute_capabilities", int(value))
            self._ncc = int(value)

        def set_compute_capability(self: IBuilderConfig, compute_capability: Any, index: int) -> bool:
            state.record("set_compute_capability", compute_capability.name, int(index))
            return 0 <= index < self._ncc and compute_capability != mod.ComputeCapability.NONE

        IBuilderConfig.num_compute_capabilities = property(_get_ncc, _set_ncc)
        IBuilderConfig.set_compute_capability = set_compute_capability

    mod.IBuilderConfig = IBuilderConfig

    def _int8_fallbacks(network: INetworkDefinition, cache: bytes, logger: ILogger) -> None:
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
                state.record("int8_fallback", name)

    def _format(elem_type: int) -> str:
        # "Format/Datatype" strings as the engine inspector writes them (developer guide, Engine Inspector)
        return {1: "Row major linear FP32 format", 10: "Row major linear FP16 format"}.get(
            elem_type, "Row major linear Int8 format" if elem_type in (2, 3) else "Unknown format"
        )

    def _layer_information(network: INetworkDefinition, verbosity: Any) -> Any:
        """What the inspector will report: names only, nothing, or layer details by verbosity."""
        if verbosity == mod.ProfilingVerbosity.NONE:
            return []
        if verbosity == mod.ProfilingVerbosity.LAYER_NAMES_ONLY:
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
        def __init__(self, logger: ILogger) -> None:
            _logger_ok(logger)
            self.logger = logger

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            state.record("create_network", int(flags))
            return INetworkDefinition(int(flags))

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> Any:
            state.record("build_serialized_network")
            if state.fail_build:
                self.logger.log(ILogger.Severity.ERROR, state.fail_build)
                return None
            cal = config._calibrator
            if cal is not None:  # what TensorRT does first: ask for the cache
                cache = cal.read_calibration_cache()
                state.record("read_calibration_cache", cache)
                if mod.BuilderFlag.INT8 in config._flags:
                    _int8_fallbacks(network, cache, self.logger)
            tensor = network.get_input(0)
            shapes = config.profiles[0].shapes[tensor.name]
            payload = {
                "input": tensor.name,
                "output": network._outputs[0].name,
                "profile": shapes,
                "scale": state.scale,
                "dtype": int(tensor.dtype),
                "plugins": network.plugins(),
                "layers": _layer_information(network, config._verbosity),
            }
            return memoryview(b"FAKEPLAN" + json.dumps(payload).encode())

    mod.Builder = Builder

    class ICudaEngine:
        def __init__(self, payload: dict[str, Any]) -> None:
            self.p = payload
            self.device_memory_size_v2 = 1 << 20

        @property
        def num_io_tensors(self) -> int:
            return 2

        def get_tensor_name(self, index: int) -> str:
            return [self.p["input"], self.p["output"]][index]

        def get_tensor_mode(self, name: str) -> Any:
            return mod.TensorIOMode.INPUT if name == self.p["input"] else mod.TensorIOMode.OUTPUT

        def get_tensor_dtype(self, name: str) -> Any:
            return mod.DataType(self.p["dtype"])

        def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
            return [tuple(s) for s in self.p["profile"]]

        def create_execution_context(self) -> IExecutionContext:
            return IExecutionContext(self)

        def create_engine_inspector(self) -> EngineInspector:
            return EngineInspector(self)

    class EngineInspector:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.execution_context: IExecutionContext | None = None

        def get_engine_information(self, format: Any) -> str:  # noqa: A002 (documented name)
            if not isinstance(format, mod.LayerInformationFormat):
                raise TypeError("format must be a LayerInformationFormat")
            state.record("get_engine_information", format.name, self.execution_context is not None)
            layers = self.engine.p.get("layers", [])
            return json.dumps(
                {"Layers": layers, "Bindings": [self.engine.p["input"], self.engine.p["output"]]}
            )

    class IExecutionContext:
        def __init__(self, engine: ICudaEngine) -> None:
            self.engine = engine
            self.shapes: dict[str, tuple[int, ...]] = {}
            self.addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            state.record("set_input_shape", name, tuple(shape))
            lo, _, hi = self.engine.p["profile"]
            ok = len(shape) == len(lo) and all(a <= d <= b for a, d, b in zip(lo, shape, hi, strict=True))
            if ok:
                self.shapes[name] = tuple(shape)
            return ok

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name == self.engine.p["input"]:
                return self.shapes[name]
            n, c, h, w = self.shapes[self.engine.p["input"]]
            s = self.engine.p["scale"]
            return (n, c, h * s, w * s)

        def set_tensor_address(self, name: str, memory: int) -> bool:
            state.record("set_tensor_address", name, int(memory))
            self.addresses[name] = int(memory)
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            state.record("execute_async_v3", int(stream_handle))
            inp, out = self.engine.p["input"], self.engine.p["output"]
            dtype = nptype(mod.DataType(self.engine.p["dtype"]))
            shape = self.shapes[inp]
            x = state.memory.read(self.addresses[inp], shape, dtype)
            s = self.engine.p["scale"]
            y = x.repeat(s, axis=2).repeat(s, axis=3)
            state.memory.write(self.addresses[out], y)
            return True

    class Runtime:
        def __init__(self, logger: ILogger) -> None:
            _logger_ok(logger)
            self.logger = logger
            self.engine_host_code_allowed = False

        def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
            state.record("deserialize_cuda_engine", len(serialized_engine))
            data = bytes(serialized_engine)
            if not data.startswith(b"FAKEPLAN"):
                return None
            payload = json.loads(data[len(b"FAKEPLAN") :])
            for name, plugin_version, namespace in payload.get("plugins", []):
                # TensorRT looks every plugin creator up while deserialising
                if registry.get_creator(name, plugin_version, namespace) is None:
                    self.logger.log(
                        ILogger.Severity.ERROR,
                        f"IPluginRegistry::getCreator: Error Code 4: "
                        f"Cannot find plugin: {name}, version: {plugin_version}, "
                        f"namespace:{namespace}.",
                    )
                    return None
            return ICudaEngine(payload)

    mod.Runtime = Runtime
    # exported like the real module's classes, so tests can compare signatures
    mod.INetworkDefinition, mod.IOptimizationProfile, mod.ITimingCache = (
        INetworkDefinition,
        IOptimizationProfile,
        ITimingCache,
    )
    mod.ICudaEngine, mod.IExecutionContext, mod.EngineInspector = (
        ICudaEngine,
        IExecutionContext,
        EngineInspector,
    )
    return mod


def install(monkeypatch: Any, version: str = "10.13.0.35", rtx: bool = False) -> types.ModuleType:
    """Put a fake `tensorrt` (or `tensorrt_rtx`) into sys.modules for one test."""
    mod = make_tensorrt(version, rtx)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod
