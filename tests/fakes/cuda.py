"""Stand-ins for the CUDA runtime bindings: cuda-python's `cuda.bindings.runtime` and `pycuda.driver`.

Device memory is simulated (`Memory`: address -> bytearray); host memory is real, reached through
the NumPy arrays' addresses with ctypes, so a copy really moves the bytes. Every call is recorded.
cuda-python calls return tuples whose first item is `cudaError_t` (cuda-python runtime docs).
"""

from __future__ import annotations

import ctypes
import enum
import sys
import types
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Memory:
    blocks: dict[int, bytearray] = field(default_factory=dict)
    next_ptr: int = 0x7F0000000000
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def alloc(self, nbytes: int) -> int:
        ptr = self.next_ptr
        self.next_ptr += (nbytes + 255) // 256 * 256 + 256
        self.blocks[ptr] = bytearray(nbytes)
        return ptr

    def read(self, ptr: int, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.frombuffer(bytes(self.blocks[ptr][:n]), dtype=dtype).reshape(shape)

    def write(self, ptr: int, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array).tobytes()
        block = self.blocks[ptr]
        if len(data) > len(block):
            raise RuntimeError(f"fake CUDA: write of {len(data)} bytes into a {len(block)}-byte buffer")
        block[: len(data)] = data


def make_cuda_runtime(memory: Memory) -> types.ModuleType:
    """A fake `cuda.bindings.runtime`."""
    rt = types.ModuleType("cuda.bindings.runtime")
    rt.cudaError_t = enum.IntEnum("cudaError_t", ["cudaSuccess", "cudaErrorMemoryAllocation"], start=0)
    rt.cudaMemcpyKind = enum.IntEnum(
        "cudaMemcpyKind",
        ["cudaMemcpyHostToHost", "cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost"],
        start=0,
    )
    ok = rt.cudaError_t.cudaSuccess
    counter = {"stream": 100, "event": 0}
    events: dict[int, float] = {}

    def cudaMalloc(size: int) -> tuple[Any, int]:  # noqa: N802 (CUDA names)
        memory.calls.append(("cudaMalloc", int(size)))
        return ok, memory.alloc(int(size))

    def cudaFree(devPtr: int) -> tuple[Any]:  # noqa: N802, N803
        memory.calls.append(("cudaFree", devPtr))
        memory.blocks.pop(devPtr)
        return (ok,)

    def cudaMemcpyAsync(dst: int, src: int, count: int, kind: Any, stream: int) -> tuple[Any]:  # noqa: N802
        memory.calls.append(("cudaMemcpyAsync", kind.name, int(count), int(stream)))
        if kind == rt.cudaMemcpyKind.cudaMemcpyHostToDevice:
            memory.blocks[dst][:count] = ctypes.string_at(src, count)
        elif kind == rt.cudaMemcpyKind.cudaMemcpyDeviceToHost:
            ctypes.memmove(dst, bytes(memory.blocks[src][:count]), count)
        else:
            raise RuntimeError("fake CUDA: unsupported copy kind")
        return (ok,)

    def cudaStreamCreate() -> tuple[Any, int]:  # noqa: N802
        counter["stream"] += 1
        memory.calls.append(("cudaStreamCreate", counter["stream"]))
        return ok, counter["stream"]

    def cudaStreamSynchronize(stream: int) -> tuple[Any]:  # noqa: N802
        memory.calls.append(("cudaStreamSynchronize", int(stream)))
        return (ok,)

    def cudaStreamDestroy(stream: int) -> tuple[Any]:  # noqa: N802
        memory.calls.append(("cudaStreamDestroy", int(stream)))
        return (ok,)

    def cudaEventCreate() -> tuple[Any, int]:  # noqa: N802
        counter["event"] += 1
        return ok, counter["event"]

    def cudaEventRecord(event: int, stream: int) -> tuple[Any]:  # noqa: N802
        events[event] = float(len(memory.calls))  # "time" advances with the number of calls
        memory.calls.append(("cudaEventRecord", event, int(stream)))
        return (ok,)

    def cudaEventSynchronize(event: int) -> tuple[Any]:  # noqa: N802
        return (ok,)

    def cudaEventElapsedTime(start: int, end: int) -> tuple[Any, float]:  # noqa: N802
        return ok, events[end] - events[start]

    def cudaMemGetInfo() -> tuple[Any, int, int]:  # noqa: N802
        used = sum(len(b) for b in memory.blocks.values())
        return ok, (80 << 30) - used, 80 << 30

    def cudaGetDevice() -> tuple[Any, int]:  # noqa: N802
        return ok, 0

    def cudaGetDeviceProperties(device: int) -> tuple[Any, Any]:  # noqa: N802
        return ok, types.SimpleNamespace(
            name=rt.DEVICE_NAME.encode() + b"\x00", major=rt.CC[0], minor=rt.CC[1]
        )

    rt.DEVICE_NAME, rt.CC = "NVIDIA H200", (9, 0)
    for fn in (
        cudaMalloc,
        cudaFree,
        cudaMemcpyAsync,
        cudaStreamCreate,
        cudaStreamSynchronize,
        cudaStreamDestroy,
        cudaEventCreate,
        cudaEventRecord,
        cudaEventSynchronize,
        cudaEventElapsedTime,
        cudaMemGetInfo,
        cudaGetDevice,
        cudaGetDeviceProperties,
    ):
        setattr(rt, fn.__name__, fn)
    return rt


def install(monkeypatch: Any, memory: Memory | None = None) -> types.ModuleType:
    """Install `cuda`, `cuda.bindings`, `cuda.bindings.runtime` into sys.modules; returns the runtime."""
    memory = memory or Memory()
    rt = make_cuda_runtime(memory)
    rt.MEMORY = memory
    cuda_pkg, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    cuda_pkg.bindings, bindings.runtime = bindings, rt
    cuda_pkg.__path__ = bindings.__path__ = []  # packages, so importlib finds the submodules
    for name, mod in (("cuda", cuda_pkg), ("cuda.bindings", bindings), ("cuda.bindings.runtime", rt)):
        monkeypatch.setitem(sys.modules, name, mod)
    return rt


def install_pycuda(monkeypatch: Any, memory: Memory | None = None) -> types.ModuleType:
    """Install a fake `pycuda` + `pycuda.driver` (documented driver API subset); block cuda-python."""
    memory = memory or Memory()
    drv = types.ModuleType("pycuda.driver")
    drv.MEMORY = memory
    clock = {"t": 0.0}

    class DeviceAllocation:
        def __init__(self, ptr: int) -> None:
            self.ptr = ptr

        def __int__(self) -> int:
            return self.ptr

        def free(self) -> None:
            memory.calls.append(("free", self.ptr))
            memory.blocks.pop(self.ptr)

    class Stream:
        def __init__(self, flags: int = 0) -> None:
            self.handle = 0x5000 + len(memory.calls)

        def synchronize(self) -> None:
            memory.calls.append(("Stream.synchronize", self.handle))

    class Event:
        def __init__(self, flags: int = 0) -> None:
            self.t = 0.0

        def record(self, stream: Stream | None = None) -> Event:
            clock["t"] += 1.5
            self.t = clock["t"]
            return self

        def synchronize(self) -> Event:
            return self

        def time_since(self, event: Event) -> float:
            return self.t - event.t

    class Context:
        def push(self) -> None:
            memory.calls.append(("Context.push",))

        def pop(self) -> None:
            memory.calls.append(("Context.pop",))

    class Device:
        def __init__(self, number: int) -> None:
            self.number = number

        def retain_primary_context(self) -> Context:
            return Context()

        def name(self) -> str:
            return "NVIDIA L4"

        def compute_capability(self) -> tuple[int, int]:
            return (8, 9)

    def init(flags: int = 0) -> None:
        memory.calls.append(("init",))

    def mem_alloc(bytesize: int) -> DeviceAllocation:
        memory.calls.append(("mem_alloc", int(bytesize)))
        return DeviceAllocation(memory.alloc(int(bytesize)))

    def memcpy_htod_async(dest: int, src: np.ndarray, stream: Stream | None = None) -> None:
        memory.calls.append(("memcpy_htod_async", stream.handle if stream else None))
        memory.blocks[int(dest)][: src.nbytes] = src.tobytes()

    def memcpy_dtoh_async(dest: np.ndarray, src: int, stream: Stream | None = None) -> None:
        memory.calls.append(("memcpy_dtoh_async", stream.handle if stream else None))
        dest[...] = np.frombuffer(bytes(memory.blocks[int(src)][: dest.nbytes]), dtype=dest.dtype).reshape(
            dest.shape
        )

    def mem_get_info() -> tuple[int, int]:
        return 20 << 30, 24 << 30

    for obj in (
        DeviceAllocation,
        Stream,
        Event,
        Device,
        init,
        mem_alloc,
        memcpy_htod_async,
        memcpy_dtoh_async,
        mem_get_info,
    ):
        setattr(drv, obj.__name__, obj)
    pkg = types.ModuleType("pycuda")
    pkg.driver, pkg.__path__ = drv, []
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)  # no cuda-python: "auto" must fall back to pycuda
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", drv)
    return drv
