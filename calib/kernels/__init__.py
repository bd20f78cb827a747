"""Fused one-pass CPU kernels (numba) for the elementwise work of a finetuning step.

A SAFT step on IMDN spent about as long in elementwise torch ops (the split quantizer's forward and
backward, L_sen's normalised distance: ~20 full passes over each feature map) as in its convolutions
(results/ptq_speed/README.md). These kernels do each in one or two passes. The torch implementations stay
as the reference: they run where numba is missing (with a one-time note), for tensors the kernels do not
take (not float32, not on the CPU), and when the environment sets `DRQ_FUSED_KERNELS=0`.
tests/calib/test_fused_kernels.py checks one against the other. The kernels must be launched from one
thread at a time (the finetuning loop): numba's workqueue layer, used here, is not threadsafe and ends the
process on concurrent launches (https://numba.readthedocs.io/en/stable/user/threading-layer.html).
"""

from __future__ import annotations

import functools
import os
import warnings
from types import ModuleType

import torch

ENV_SWITCH = "DRQ_FUSED_KERNELS"


@functools.cache
def _numba() -> ModuleType | None:
    try:
        import numba
    except ImportError:
        warnings.warn(
            "numba is not installed: finetuning uses the slower torch reference kernels "
            "(pip install numba, or the drq[calib] extra)",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    if "NUMBA_THREADING_LAYER" not in os.environ:
        # numba's OpenMP layer shares torch's libgomp and resets its thread count when it starts (a
        # `--threads 1` run then convolved on every core); the workqueue layer has threads of its own.
        numba.config.THREADING_LAYER = "workqueue"
    return numba


def enabled() -> bool:
    """True when the fused kernels are used: numba importable and `DRQ_FUSED_KERNELS` not "0"."""
    if os.environ.get(ENV_SWITCH, "1") == "0":
        return False
    return _numba() is not None


def takes(*tensors: torch.Tensor) -> bool:
    """The kernels run on float32 CPU tensors only (others take the torch reference)."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors)


def match_threads() -> None:
    """Run numba's parallel loops on as many threads as torch (what `--threads` set)."""
    numba = _numba()
    if numba is None:
        return
    wanted = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    if numba.get_num_threads() != wanted:
        numba.set_num_threads(wanted)


def flat(t: torch.Tensor):  # type: ignore[no-untyped-def]
    """A 1-D NumPy view of a contiguous float32 CPU tensor (no copy; writes go to the tensor)."""
    return t.detach().view(-1).numpy()


def rows(t: torch.Tensor):  # type: ignore[no-untyped-def]
    """(1-D NumPy view, row count, row stride, row length) of a non-empty float32 CPU tensor read as rows
    of contiguous values: one row when contiguous, else its dim-0 slices when each is one block (a channel
    slice of a feature map, as IMDN's split gives: no copy). None for any other layout."""
    if t.is_contiguous():
        return flat(t), 1, t.numel(), t.numel()
    try:
        view = t.detach().view(t.shape[0], -1)
    except RuntimeError:  # dims 1.. not one block
        return None
    n, m = view.shape
    if (m > 1 and view.stride(1) != 1) or view.stride(0) < m:
        return None
    span = (n - 1) * view.stride(0) + m
    return torch.as_strided(view, (span,), (1,)).numpy(), n, view.stride(0), m
