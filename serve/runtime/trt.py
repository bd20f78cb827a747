"""TensorRT / TensorRT-RTX engine runner behind the `Runner` Protocol (torch-free).

Loading checks the manifest before TensorRT sees the engine, so a wrong engine fails with one line:
the engine file must match the manifest's sha256, the TensorRT version must equal the build's (for
`--version-compatible` engines: a later release of the same major, or of the next one where TensorRT
documents it), and the GPU must be the one it was built for (`RuntimeBackend.check_runtime_device`).
Dual-region plugins named in the manifest are
registered before deserialising (TensorRT looks plugin creators up while deserialising).

Running uses the name-based I/O API of TensorRT 10.x/11.x (IExecutionContext page of the Python API):
`set_input_shape(name, shape)`, `get_tensor_shape(output)`, `set_tensor_address(name, ptr)` for every
I/O tensor, then `execute_async_v3(stream_handle)`; copies are async on the same stream and one
stream synchronisation ends the call.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from drq.manifest import Manifest, load_manifest, manifest_path
from drq.versions import version_numbers
from serve.errors import EngineMismatch, RunnerError
from serve.runtime.cuda import Binding, CudaApi, load_cuda
from serve.runtime.tensorrt_module import RuntimeBackend, load_runtime

_CROSS_MAJOR = {(8, 9), (8, 10), (9, 10), (10, 11)}  # (built, running) majors for version-compatible plans


def check_versions(engine: Path, manifest: Manifest, flavour: str, running: str) -> None:
    """The engine's TensorRT flavour/version against the running one.

    Raises:
        EngineMismatch: `<engine>: built with tensorrt 10.8.0, running 10.13.0; rebuild ...`.
    """
    if manifest.flavour != flavour:
        raise EngineMismatch(f"{engine}: built with {manifest.flavour}, loaded with {flavour}")
    if manifest.tensorrt_version == running:
        return
    built_key, running_key = version_numbers(manifest.tensorrt_version), version_numbers(running)
    if manifest.version_compatible and running_key >= built_key:
        # BuilderFlag.VERSION_COMPATIBLE: later runtimes of the same major, and across majors only
        # 8 -> 9/10 and 10 -> 11 ("Version Compatibility", TensorRT developer guide; "Engine Portability"
        # in the TensorRT 11.4 support matrix: "No other combination across major versions is
        # supported"); never older runtimes. https://docs.nvidia.com/deeplearning/tensorrt/latest/
        # inference-library/engine-compatibility.html, .../latest/getting-started/support-matrix.html
        built_major, running_major = (built_key or (0,))[0], (running_key or (0,))[0]
        if running_major == built_major or (built_major, running_major) in _CROSS_MAJOR:
            return
        raise EngineMismatch(
            f"{engine}: built version-compatible with {manifest.flavour} {manifest.tensorrt_version}, "
            f"running {running}; TensorRT {built_major} engines do not run on TensorRT {running_major}; "
            "rebuild it with drq build"
        )
    hint = "rebuild it with drq build" + ("" if manifest.version_compatible else " (or --version-compatible)")
    raise EngineMismatch(
        f"{engine}: built with {manifest.flavour} {manifest.tensorrt_version}, running {running}; {hint}"
    )


class TrtRunner:
    """A deserialised engine with one execution context, a CUDA stream and cached device buffers.

    Args:
        engine: the `.plan` file; its manifest `<engine>.json` must sit beside it.
        cuda: "auto" (cuda-python, else pycuda), "cuda-python" or "pycuda".
        backend: TensorRT flavour stand-in for tests (default: the manifest's flavour, imported).
        cuda_api: CUDA binding stand-in for tests (default: `load_cuda(cuda)`).

    Raises:
        ManifestError: missing or invalid manifest.
        EngineMismatch: engine file, TensorRT version or GPU differ from the manifest's.
        MissingDependency: TensorRT or a CUDA binding is missing.
    """

    def __init__(
        self,
        engine: str | os.PathLike[str],
        cuda: Binding = "auto",
        backend: RuntimeBackend | None = None,
        cuda_api: CudaApi | None = None,
    ) -> None:
        self.path = Path(engine)
        self.name = self.path.name
        self.manifest = load_manifest(manifest_path(self.path))
        try:
            data = self.path.read_bytes()
        except FileNotFoundError as err:
            raise EngineMismatch(f"{self.path}: no such engine file") from err
        if hashlib.sha256(data).hexdigest() != self.manifest.engine_sha256:
            raise EngineMismatch(
                f"{self.path}: engine bytes differ from its manifest's engine_sha256 "
                "(rebuilt or copied without its .json?)"
            )
        if backend is None:
            backend = load_runtime(self.manifest.flavour)  # type: ignore[arg-type]
        self.backend = backend
        check_versions(self.path, self.manifest, backend.flavour, backend.version)
        self.cuda = cuda_api if cuda_api is not None else load_cuda(cuda)
        self.stream: Any = None
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)
        try:
            self._open(backend, data)
        except BaseException:
            self.close()  # a pycuda context pushed by load_cuda must not outlive a failed load
            raise

    def _open(self, backend: RuntimeBackend, data: bytes) -> None:
        """Check the GPU, deserialise the engine, make the context and the stream."""
        backend.check_runtime_device(
            self.manifest.device,
            self.manifest.compute_capability,
            self.manifest.hardware_compatible,
            self.cuda.device(),
        )
        if any(p.startswith("drq::") for p in self.manifest.plugins):
            from plugins.trt_registration import register_dual_region_plugins

            register_dual_region_plugins()
        trt = backend.trt
        self.trt = trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        if self.manifest.version_compatible:
            # Version-compatible plans embed the lean runtime; IRuntime refuses them unless allowed to
            # run host code ("Version Compatibility" in the TensorRT developer guide).
            self._runtime.engine_host_code_allowed = True
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineMismatch(f"{self.path}: TensorRT {backend.version} could not deserialise the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise EngineMismatch(
                f"{self.path}: expected one input and one output, found {self.inputs} / {self.outputs}"
            )
        self.input_name, self.output_name = self.inputs[0], self.outputs[0]
        self.stream = self.cuda.stream_create()

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, capacity = self._buffers.get(name, (0, 0))
        if capacity < nbytes:
            if ptr:
                self.cuda.free(ptr)
            ptr, capacity = self.cuda.malloc(nbytes), nbytes
            self._buffers[name] = (ptr, capacity)
        return ptr

    def check_shape(self, shape: tuple[int, ...]) -> None:
        """Raise EngineMismatch when `shape` is outside the engine's optimization profile."""
        profile = self.manifest.profile
        if not profile.contains(tuple(shape)):
            raise EngineMismatch(
                f"{self.path}: input shape {'x'.join(map(str, shape))} is outside the engine's "
                f"profile ({profile.describe()}); rebuild with drq build --min/--opt/--max"
            )

    def enqueue(self, x: np.ndarray) -> np.ndarray:
        """Set shapes and addresses, copy `x` in and launch; returns the (not yet filled) host output."""
        x = np.ascontiguousarray(x, dtype=self._dtype(self.input_name))
        self.check_shape(tuple(x.shape))
        if not self.context.set_input_shape(self.input_name, tuple(int(d) for d in x.shape)):
            raise EngineMismatch(f"{self.path}: TensorRT rejected input shape {list(x.shape)}")
        out_shape = tuple(int(d) for d in self.context.get_tensor_shape(self.output_name))
        if any(d < 0 for d in out_shape):
            raise RunnerError(
                f"{self.path}: output shape {list(out_shape)} is not resolved after set_input_shape"
            )
        out = np.empty(out_shape, dtype=self._dtype(self.output_name))
        in_ptr = self._buffer(self.input_name, x.nbytes)
        out_ptr = self._buffer(self.output_name, out.nbytes)
        for name, ptr in ((self.input_name, in_ptr), (self.output_name, out_ptr)):
            if not self.context.set_tensor_address(name, ptr):
                raise RunnerError(f"{self.path}: TensorRT rejected the address of tensor {name!r}")
        self.cuda.memcpy_htod_async(in_ptr, x, self.stream)
        if not self.context.execute_async_v3(self.cuda.stream_handle(self.stream)):
            raise RunnerError(f"{self.path}: execute_async_v3 failed for input {list(x.shape)}")
        self.cuda.memcpy_dtoh_async(out, out_ptr, self.stream)
        self._pending = (x, out)  # keep host arrays alive until the stream is synchronised
        return out

    def run(self, x: np.ndarray) -> np.ndarray:
        """Run one batch and wait for it; returns float32."""
        out = self.enqueue(x)
        self.cuda.stream_synchronize(self.stream)
        return out.astype(np.float32, copy=False)

    def close(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers.clear()
        if self.stream is not None:
            self.cuda.stream_destroy(self.stream)
            self.stream = None
        # TensorRT objects go before the CUDA context they were created in
        self.context = None
        self.engine = None
        self.cuda.close()

    def device_memory_bytes(self) -> int:
        """Device memory held by the context's activations plus the I/O buffers (engine weights excluded)."""
        size: Any = getattr(self.engine, "device_memory_size_v2", None)
        if size is None:
            size = getattr(self.engine, "device_memory_size", 0)
        return int(size) + sum(c for _, c in self._buffers.values())
