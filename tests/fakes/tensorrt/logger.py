"""ILogger / Logger (Python API "Logger" page): a Python logger subclasses ILogger and must call its
`__init__` (pybind11 trampolines fail otherwise), which `check_logger` enforces for every consumer."""

from __future__ import annotations

import enum
from typing import Any

from tests.fakes.tensorrt.state import Fake


class ILogger:
    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    def __init__(self) -> None:
        self._initialised = True

    def log(self, severity: Any, msg: str) -> None:  # overridden by subclasses
        pass


class Logger(ILogger):
    WARNING = ILogger.Severity.WARNING
    ERROR = ILogger.Severity.ERROR

    def __init__(self, min_severity: Any = ILogger.Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity


def check_logger(logger: Any) -> None:
    if not isinstance(logger, ILogger) or not getattr(logger, "_initialised", False):
        raise TypeError("logger must be an ILogger whose __init__ was called")


def add_logger(fake: Fake) -> None:
    fake.mod.ILogger, fake.mod.Logger = ILogger, Logger
