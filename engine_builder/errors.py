"""User-facing errors of `engine_builder`."""

from __future__ import annotations


class BuildError(Exception):
    """Base of every user error raised by `engine_builder`."""


class ExportError(BuildError):
    """A recipe cannot be lowered to the requested ONNX form."""


class EngineMismatch(BuildError):
    """An engine was built by another TensorRT version or GPU, or its input is outside the profile."""


class MissingDependency(BuildError, ImportError):
    """An optional package (tensorrt, tensorrt_rtx, onnxruntime, cuda-python/pycuda) is not installed."""
