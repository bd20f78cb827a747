"""Stand-in for the `tensorrt` (10.x / 11.x) and `tensorrt_rtx` Python modules: builder, ONNX parser,
runtime and execution context, with the documented parameter names, recording every call.

`make_tensorrt(version, rtx)` assembles one fake module from pieces a reader can check one at a time;
each piece cites the TensorRT documentation its behaviour follows:

* `enums`: which flags and enums exist in 10.x, 11.x and TensorRT-RTX (the 10.x -> 11.x migration page).
* `logger`: ILogger / Logger, and the check that a logger subclass called `ILogger.__init__`.
* `parser`: the plugin registry and the ONNX parser's node dispatch in its three generations
  (onnx-tensorrt's `parseNode`).
* `builder`: network, optimization profile, timing cache, builder config (10.x calibrators, RTX
  compute-capability targets) and the builder, which refuses precision flags on a strongly typed
  network and records in the plan what the runtime must check.
* `runtime`: Runtime, ICudaEngine, IExecutionContext: a version-compatible plan needs
  `engine_host_code_allowed`; a plan with JIT Python plugins needs their creators registered, one
  with AOT plugins does not.

Parameter names follow the docs, so a call with a wrong keyword fails with TypeError as the real
pybind11 bindings do. `execute_async_v3` reads the input from the fake CUDA memory (`tests.fakes.cuda`)
and writes a nearest-neighbour x`SCALE` upscale of it to the output address, so a runner test can check
the bytes that come back.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from tests.fakes.tensorrt import builder, enums, logger, parser, runtime
from tests.fakes.tensorrt.state import Call, Fake, State

__all__ = ["Call", "State", "install", "make_tensorrt"]


def make_tensorrt(
    version: str = "10.13.0.35", rtx: bool = False, state: State | None = None
) -> types.ModuleType:
    """A fresh fake module; `module.STATE` holds the recorded calls and knobs."""
    mod = types.ModuleType("tensorrt_rtx" if rtx else "tensorrt")
    mod.__version__ = version
    fake = Fake(mod=mod, state=state or State(), version=version, rtx=rtx)
    mod.STATE = fake.state
    enums.add_enums(fake)
    logger.add_logger(fake)
    parser.add_parser(fake)
    builder.add_builder(fake)
    runtime.add_runtime(fake)
    return mod


def install(monkeypatch: Any, version: str = "10.13.0.35", rtx: bool = False) -> types.ModuleType:
    """Put a fake `tensorrt` (or `tensorrt_rtx`) into sys.modules for one test."""
    mod = make_tensorrt(version, rtx)
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    return mod
