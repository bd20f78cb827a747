"""User-facing errors of `calib`: one base, one-line messages `<file or object>: <problem>`.

Recipe and image errors belong to the shared contracts (`drq.errors`), which `calib` reads and writes.
"""

from __future__ import annotations

from drq.errors import DrqError
from drq.errors import MissingDependency as _MissingDependency


class CalibError(DrqError):
    """Base of every user error raised by `calib` (the CLI prints it on one line, exit 2)."""


class ModelError(CalibError):
    """Unknown architecture, unsupported scale, or a checkpoint that does not fit."""


class MissingDependency(CalibError, _MissingDependency):
    """An optional package needed by the requested feature is not installed."""
