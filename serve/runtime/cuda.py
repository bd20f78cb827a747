"""The CUDA binding the TensorRT runner and the GPU benchmark use: cuda-python or pycuda, chosen here only.

Both are wrapped behind one small `CudaApi` (device buffers as integer addresses, streams, events,
async copies), so `runtime/trt.py` and `bench.py` never see which binding is installed.

* cuda-python: the runtime API (`cuda.bindings.runtime` from cuda-python 12.6 on, `cuda.cudart`
  before). Every call returns a tuple whose first item is a `cudaError_t`; TensorRT's own Python samples
  (`common_runtime.py`) use it the same way.
* pycuda: `pycuda.driver` with an explicitly created primary context (never `pycuda.autoinit`, which
  does work at import time).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from serve.errors import MissingDependency, RunnerError

Binding = Literal["auto", "cuda-python", "pycuda"]


class CudaError(RunnerError):
    """A CUDA runtime call failed (named, with the CUDA error)."""


class CudaApi(Protocol):
    """The subset of CUDA a TensorRT runner needs."""

    name: str

    def malloc(self, nbytes: int) -> int: ...
    def free(self, ptr: int) -> None: ...
    def stream_create(self) -> Any: ...
    def stream_handle(self, stream: Any) -> int: ...
    def stream_synchronize(self, stream: Any) -> None: ...
    def stream_destroy(self, stream: Any) -> None: ...
    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None: ...
    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None: ...
    def event_create(self) -> Any: ...
    def event_record(self, event: Any, stream: Any) -> None: ...
    def event_synchronize(self, event: Any) -> None: ...
    def event_elapsed_ms(self, start: Any, end: Any) -> float: ...
    def mem_get_info(self) -> tuple[int, int]: ...
    def device(self) -> tuple[str, str]: ...
    def close(self) -> None: ...


def _import_cudart() -> Any:
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("cuda-python runtime bindings")


@dataclass
class CudaPython:
    """`CudaApi` over the cuda-python runtime bindings."""

    rt: Any
    name: str = "cuda-python"

    def _check(self, result: Any, what: str) -> Any:
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != int(self.rt.cudaError_t.cudaSuccess):
            raise CudaError(f"CUDA {what}: {err}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else tuple(rest)

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(int(nbytes)), f"cudaMalloc({nbytes})"))

    def free(self, ptr: int) -> None:
        self._check(self.rt.cudaFree(ptr), "cudaFree")

    def stream_create(self) -> Any:
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(
            self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream), "cudaMemcpyAsync H2D"
        )

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(
            self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream), "cudaMemcpyAsync D2H"
        )

    def event_create(self) -> Any:
        return self._check(self.rt.cudaEventCreate(), "cudaEventCreate")

    def event_record(self, event: Any, stream: Any) -> None:
        self._check(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_synchronize(self, event: Any) -> None:
        self._check(self.rt.cudaEventSynchronize(event), "cudaEventSynchronize")

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(self._check(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def mem_get_info(self) -> tuple[int, int]:
        free, total = self._check(self.rt.cudaMemGetInfo(), "cudaMemGetInfo")
        return int(free), int(total)

    def device(self) -> tuple[str, str]:
        index = self._check(self.rt.cudaGetDevice(), "cudaGetDevice")
        prop = self._check(self.rt.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
        name = (
            prop.name.decode(errors="replace").rstrip("\x00")
            if isinstance(prop.name, bytes)
            else str(prop.name)
        )
        return name, f"{prop.major}.{prop.minor}"

    def close(self) -> None:
        return None  # the runtime API owns the primary context


@dataclass
class PyCuda:
    """`CudaApi` over pycuda.driver (a primary context made current on device 0 at construction)."""

    drv: Any
    name: str = "pycuda"

    def __post_init__(self) -> None:
        self.drv.init()
        self._dev = self.drv.Device(0)
        self._ctx = self._dev.retain_primary_context()
        self._ctx.push()
        self._allocations: dict[int, Any] = {}

    def malloc(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(int(nbytes))
        self._allocations[int(alloc)] = alloc  # pycuda frees when the object dies: keep it alive
        return int(alloc)

    def free(self, ptr: int) -> None:
        alloc = self._allocations.pop(ptr, None)
        if alloc is not None:
            alloc.free()

    def stream_create(self) -> Any:
        return self.drv.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def stream_destroy(self, stream: Any) -> None:
        return None  # pycuda destroys the stream with its object

    def memcpy_htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst, src, stream)

    def memcpy_dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(dst, src, stream)

    def event_create(self) -> Any:
        return self.drv.Event()

    def event_record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def event_synchronize(self, event: Any) -> None:
        event.synchronize()

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        return float(end.time_since(start))

    def mem_get_info(self) -> tuple[int, int]:
        free, total = self.drv.mem_get_info()
        return int(free), int(total)

    def device(self) -> tuple[str, str]:
        major, minor = self._dev.compute_capability()
        return str(self._dev.name()), f"{major}.{minor}"

    def close(self) -> None:
        """Pop the context pushed at construction (idempotent): pycuda aborts at exit when its context
        stack is not empty."""
        if self._ctx is not None:
            self._ctx.pop()
            self._ctx = None


def load_cuda(binding: Binding = "auto") -> CudaApi:
    """The CUDA binding to use: cuda-python first, then pycuda (or exactly the one asked for).

    Raises:
        MissingDependency: neither (or not the requested) binding is installed.
    """
    if binding not in ("auto", "cuda-python", "pycuda"):
        raise RunnerError(f"cuda binding {binding!r}: choose from auto, cuda-python, pycuda")
    if binding in ("auto", "cuda-python"):
        try:
            return CudaPython(_import_cudart())
        except ImportError as err:
            if binding == "cuda-python":
                raise MissingDependency(
                    "running TensorRT engines needs cuda-python (pip install 'drq[cuda]')"
                ) from err
    try:
        drv = importlib.import_module("pycuda.driver")
    except ImportError as err:
        raise MissingDependency(
            "running TensorRT engines needs a CUDA binding: pip install 'drq[cuda]' "
            "(cuda-python) or 'drq[pycuda]'"
        ) from err
    return PyCuda(drv)


def current_device(binding: Binding = "auto") -> tuple[str, str]:
    """(name, "major.minor") of the current CUDA device.

    The binding is closed again: with pycuda that pops the context `PyCuda` pushed (pycuda aborts at
    exit when its context stack is not empty, and a context left current would leak into later work).
    """
    cuda = load_cuda(binding)
    try:
        return cuda.device()
    finally:
        cuda.close()
