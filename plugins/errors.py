"""User-facing errors of `plugins`."""

from __future__ import annotations


class PluginError(Exception):
    """Base of every user error raised by `plugins`."""


class MissingDependency(PluginError, ImportError):
    """An optional package (triton, tensorrt) needed by the requested feature is not installed."""
