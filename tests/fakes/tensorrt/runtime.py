"""Runtime, ICudaEngine and IExecutionContext (Python API "Runtime", "ICudaEngine", "IExecutionContext").

`deserialize_cuda_engine` returns None after logging an error, as TensorRT does, when:

* the plan embeds host code (a version-compatible plan with its lean runtime) and
  `engine_host_code_allowed` is False ("Runtime" page: "Whether this runtime is allowed to deserialize
  engines that contain host executable code (Default: False)"; "Version Compatibility": call
  setEngineHostCodeAllowed(true) for such plans);
* a plugin layer whose implementation is not embedded (a JIT Python plugin) has no registered creator
  (IPluginRegistry: "used to find plugin implementations during engine deserialization"). AOT Python
  plugins are embedded in the plan and need no registration (see `builder`).
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes.tensorrt.builder import PLAN_MAGIC
from tests.fakes.tensorrt.logger import ILogger, check_logger
from tests.fakes.tensorrt.state import Fake, bind


class ICudaEngine:
    fake: Fake

    def __init__(self, payload: dict[str, Any]) -> None:
        self.p = payload
        self.device_memory_size_v2 = 1 << 20

    @property
    def num_io_tensors(self) -> int:
        return 2

    def get_tensor_name(self, index: int) -> str:
        return [self.p["input"], self.p["output"]][index]

    def get_tensor_mode(self, name: str) -> Any:
        io = self.fake.mod.TensorIOMode
        return io.INPUT if name == self.p["input"] else io.OUTPUT

    def get_tensor_dtype(self, name: str) -> Any:
        return self.fake.mod.DataType(self.p["dtype"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[tuple[int, ...]]:
        return [tuple(s) for s in self.p["profile"]]

    def create_execution_context(self) -> IExecutionContext:
        return self.fake.mod.IExecutionContext(self)

    def create_engine_inspector(self) -> EngineInspector:
        return self.fake.mod.EngineInspector(self)


class EngineInspector:
    """EngineInspector (Python API page): what the plan recorded, in detail only when the build set
    ProfilingVerbosity.DETAILED (see `builder._layer_information`)."""

    fake: Fake

    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.execution_context: IExecutionContext | None = None

    def get_engine_information(self, format: Any) -> str:  # noqa: A002 (documented name)
        if not isinstance(format, self.fake.mod.LayerInformationFormat):
            raise TypeError("format must be a LayerInformationFormat")
        self.fake.state.record("get_engine_information", format.name, self.execution_context is not None)
        layers = self.engine.p.get("layers", [])
        return json.dumps({"Layers": layers, "Bindings": [self.engine.p["input"], self.engine.p["output"]]})


class IExecutionContext:
    fake: Fake

    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        self.fake.state.record("set_input_shape", name, tuple(shape))
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
        self.fake.state.record("set_tensor_address", name, int(memory))
        self.addresses[name] = int(memory)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        state, mod = self.fake.state, self.fake.mod
        state.record("execute_async_v3", int(stream_handle))
        inp, out = self.engine.p["input"], self.engine.p["output"]
        dtype = mod.nptype(mod.DataType(self.engine.p["dtype"]))
        x = state.memory.read(self.addresses[inp], self.shapes[inp], dtype)
        s = self.engine.p["scale"]
        state.memory.write(self.addresses[out], x.repeat(s, axis=2).repeat(s, axis=3))
        return True


class Runtime:
    fake: Fake

    def __init__(self, logger: ILogger) -> None:
        check_logger(logger)
        self.logger = logger
        self.engine_host_code_allowed = False

    def _refusal(self, payload: dict[str, Any]) -> str | None:
        if payload.get("host_code") and not self.engine_host_code_allowed:
            return (
                "Error Code 1: Serialization (the plan contains host code (an embedded lean runtime); "
                "set engine_host_code_allowed to deserialize it)"
            )
        registry = self.fake.mod.get_plugin_registry()
        for name, plugin_version, namespace, aot in payload.get("plugins", []):
            if not aot and registry.get_creator(name, plugin_version, namespace) is None:
                return (
                    f"IPluginRegistry::getCreator: Error Code 4: Cannot find plugin: {name}, "
                    f"version: {plugin_version}, namespace:{namespace}."
                )
        return None

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        self.fake.state.record("deserialize_cuda_engine", len(serialized_engine))
        data = bytes(serialized_engine)
        if not data.startswith(PLAN_MAGIC):
            return None
        payload = json.loads(data[len(PLAN_MAGIC) :])
        refusal = self._refusal(payload)
        if refusal:
            self.logger.log(ILogger.Severity.ERROR, refusal)
            return None
        return self.fake.mod.ICudaEngine(payload)


def add_runtime(fake: Fake) -> None:
    mod = fake.mod
    mod.Runtime = bind(Runtime, fake)
    mod.ICudaEngine = bind(ICudaEngine, fake)
    mod.IExecutionContext = bind(IExecutionContext, fake)
    mod.EngineInspector = bind(EngineInspector, fake)
