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
