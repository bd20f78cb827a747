"""numpy <-> python-backend tensors through DLPack, which works with numpy 1.x and 2.x alike.

The python backend stub of Triton 2.51 (the one `nvidia-pytriton` 0.7.0 bundles) converts tensors with
pybind11 code built against numpy 1's C ABI: with numpy 2 installed, `Tensor.as_numpy()` reads wrong
strides (an FP32 input [1, 2] arrived as [1, 1]) and `pb_utils.Tensor(name, array)` reports a size
mismatch. DLPack does not go through numpy's dtype structs, so these helpers use it both ways:
`np.from_dlpack(tensor)` and `Tensor.from_dlpack(name, array)`.

With numpy 2, the stub renames the capsule it consumes in a way numpy's capsule destructor does not
expect, and numpy reports "PyCapsule_GetPointer called with incorrect name" as an unraisable error
(printed with a traceback per tensor). The tensor is intact and nothing leaks (checked: 400 requests of
4 MB outputs left the stub's RSS flat), so `silence_capsule_warning` drops exactly that report.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

_CAPSULE_MESSAGE = "PyCapsule_GetPointer called with incorrect name"


def to_numpy(tensor: Any) -> np.ndarray:
    """A copy of a python-backend tensor's data (the tensor's memory belongs to its request)."""
    return np.array(np.from_dlpack(tensor), copy=True)


def from_numpy(pb_utils: Any, name: str, array: np.ndarray) -> Any:
    """A python-backend output (or BLS input) tensor holding `array`."""
    contiguous = np.ascontiguousarray(array)
    # DLPack 0.x cannot mark an export read-only, so numpy refuses to export read-only arrays.
    return pb_utils.Tensor.from_dlpack(name, contiguous if contiguous.flags.writeable else contiguous.copy())


def silence_capsule_warning() -> None:
    """Install an unraisable-error hook that drops numpy 2's capsule-name report and passes on the rest."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, ValueError) and _CAPSULE_MESSAGE in str(unraisable.exc_value):
            return
        previous(unraisable)

    sys.unraisablehook = hook
