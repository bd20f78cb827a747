"""What every piece of the fake shares: the module being assembled, the recorded calls, the version."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]


@dataclass
class State:
    calls: list[Call] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    fail_build: str | None = None  # logged as ERROR and build returns None
    refuse_timing_cache: bool = False  # set_timing_cache returns False (cache of another device/version)
    scale: int = 2
    memory: Any = None  # tests.fakes.cuda.Memory, for execute_async_v3

    def record(self, name: str, *args: Any) -> None:
        self.calls.append(Call(name, args))

    def named(self, name: str) -> list[Call]:
        return [c for c in self.calls if c.name == name]


@dataclass
class Fake:
    """One fake module under construction; classes reach it through their `fake` class attribute."""

    mod: types.ModuleType
    state: State
    version: str
    rtx: bool

    @property
    def major_minor(self) -> tuple[int, int]:
        parts = [int(p) for p in self.version.split(".")[:2]]
        return parts[0], parts[1]

    @property
    def weak(self) -> bool:
        """Weak typing (FP16/INT8 builder flags, calibrators) exists in full TensorRT <= 10.x only."""
        return self.major_minor[0] < 11 and not self.rtx


def bind(cls: type, fake: Fake, **extra: Any) -> type:
    """`cls` for one fake module: a subclass carrying `fake`, exported under the real class name."""
    return type(cls.__name__, (cls,), {"fake": fake, **extra})
