"""The `Runner` Protocol every runtime implements (torch-free): NCHW float32 in, NCHW float32 out."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    """One loaded model. `run` takes a 1 x 3 x h x w float32 array in [0, 1] and returns the SR output."""

    name: str

    def run(self, x: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...
