"""User-facing errors of `calib`: one base, one-line messages `<file or object>: <problem>`."""

from __future__ import annotations


class CalibError(Exception):
    """Base of every user error raised by `calib` (the CLI prints it on one line, exit 2)."""


class RecipeError(CalibError):
    """A recipe file is malformed, of an unknown schema version, or does not match the model."""


class ImageError(CalibError):
    """An image or dataset folder cannot be used."""


class ModelError(CalibError):
    """Unknown architecture, unsupported scale, or a checkpoint that does not fit."""


class MissingDependency(CalibError, ImportError):
    """An optional package needed by the requested feature is not installed."""
