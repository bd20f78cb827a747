"""User-facing errors of `engine_builder`."""

from __future__ import annotations

from drq.errors import DrqError
from drq.errors import MissingDependency as _MissingDependency


class BuildError(DrqError):
    """Base of every user error raised by `engine_builder`."""


class ExportError(BuildError):
    """A recipe cannot be lowered to the requested ONNX form."""


class MissingDependency(BuildError, _MissingDependency):
    """An optional package (tensorrt, tensorrt_rtx, onnxruntime, cuda-python/pycuda) is not installed."""
