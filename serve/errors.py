"""User-facing errors of `serve`, the torch-free runtime."""

from __future__ import annotations

from drq.errors import DrqError
from drq.errors import MissingDependency as _MissingDependency


class ServeError(DrqError):
    """Base of every user error raised by `serve`."""


class RunnerError(ServeError):
    """A model cannot be loaded or run by a runtime (onnxruntime, TensorRT, TensorRT-RTX)."""


class EngineMismatch(RunnerError):
    """An engine was built by another TensorRT version or GPU, or its input is outside the profile."""


class MissingDependency(ServeError, _MissingDependency):
    """An optional package (onnxruntime, tensorrt, a CUDA binding, tritonclient) is not installed."""
