"""Shared fixtures and marker gating: each resource-bound marker skips with a reason when absent."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def _has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _has_gpu() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except ImportError:
        return False


def _has_full_tensorrt() -> bool:
    if not _has_module("tensorrt"):
        return False
    try:
        import tensorrt

        return hasattr(tensorrt, "Builder")
    except Exception:  # a broken TensorRT install counts as absent for gating
        return False


_GATES = {
    "shared_data": (lambda: SHARED.is_dir(), f"needs the shared test data at {SHARED}"),
    "rtx": (lambda: _has_module("tensorrt_rtx"), "needs TensorRT-RTX (pip install 'drq[rtx]')"),
    "tensorrt": (_has_full_tensorrt, "needs full TensorRT and a GPU (pip install 'drq[tensorrt]')"),
    "gpu": (_has_gpu, "needs a CUDA GPU"),
}
_GATE_CACHE: dict[str, tuple[bool, str]] = {}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker, (probe, reason) in _GATES.items():
            if marker in item.keywords:
                if marker not in _GATE_CACHE:
                    _GATE_CACHE[marker] = (probe(), reason)
                ok, why = _GATE_CACHE[marker]
                if not ok:
                    item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout; skips the test when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"needs the shared test data at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def set5_x4(shared_dir: Path) -> Path:
    path = shared_dir / "sr_bench" / "Set5" / "x4"
    if not path.is_dir():
        pytest.skip(f"needs {path}")
    return path
