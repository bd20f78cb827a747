"""engine_builder.backends: no import cycle, and RTX compute-capability targets through the one parser."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from engine_builder.backends.base import FeatureUnavailable
from engine_builder.backends.rtx import set_compute_capabilities
from tests.fakes.tensorrt import make_tensorrt

BACKENDS = Path(__file__).resolve().parents[2] / "engine_builder" / "backends"


def _imports(path: Path) -> set[str]:
    """Project modules a file imports anywhere (module level and inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_backends_do_not_import_each_other_in_a_cycle() -> None:
    graph = {
        f"engine_builder.backends.{p.stem}": {
            m for m in _imports(p) if m.startswith("engine_builder.backends.")
        }
        for p in BACKENDS.glob("*.py")
        if p.stem != "__init__"
    }

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        nexts = graph.get(start, set())
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in nexts)

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert not cycles, f"import cycle through {cycles}"
    assert "engine_builder.backends.trt" not in graph["engine_builder.backends.rtx"]


class _Config:
    def __init__(self) -> None:
        self.num_compute_capabilities = 0
        self.set: list[tuple[str, int]] = []

    def set_compute_capability(self, value: object, index: int) -> bool:
        self.set.append((value.name, index))  # type: ignore[attr-defined]
        return index < self.num_compute_capabilities


def test_compute_capability_targets_are_parsed_once() -> None:
    trt = make_tensorrt("1.7.1", rtx=True)
    config = _Config()
    set_compute_capabilities(trt, config, ("8.6", "sm_120", "89", "current"))
    assert config.num_compute_capabilities == 4
    assert config.set == [("SM86", 0), ("SM120", 1), ("SM89", 2), ("CURRENT", 3)]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("9.0", r"compute capability '9.0': not a target of this TensorRT-RTX; choose from SM75, SM80"),
        ("sm_100", r"'sm_100': not a target"),
        ("abc", r"--compute-capability: compute capability 'abc': expected e.g. 8.6"),
    ],
)
def test_compute_capability_targets_refused(target: str, message: str) -> None:
    with pytest.raises(FeatureUnavailable, match=message):
        set_compute_capabilities(make_tensorrt("1.7.1", rtx=True), _Config(), (target,))
