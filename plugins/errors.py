"""User-facing errors of `plugins`."""

from __future__ import annotations

from drq.errors import DrqError
from drq.errors import MissingDependency as _MissingDependency


class PluginError(DrqError):
    """Base of every user error raised by `plugins`."""


class MissingDependency(PluginError, _MissingDependency):
    """An optional package (triton, tensorrt) needed by the requested feature is not installed."""
