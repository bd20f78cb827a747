"""The runtime installs and runs without torch: tests/torch_free_lane.sh in a second virtual environment.

The script builds a venv with `pip install -e '.[serve]'` (plus the Triton server wheel and pytest),
checks that torch does not import there, runs `drq upscale` on an ONNX model and runs every test marked
`torch_free`. Slow (pip installs, a few minutes from a warm pip cache), so it is marked `slow`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LANE = REPO / "tests" / "torch_free_lane.sh"


def _lane_environment(base_python: str) -> dict[str, str]:
    """This environment (pip settings included) without the current venv, so nothing of it leaks in."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != venv_bin
    )
    env["PYTHON"] = base_python
    return env


@pytest.mark.slow
def test_the_runtime_install_has_no_torch_and_passes_the_torch_free_tests() -> None:
    base = getattr(sys, "_base_executable", sys.executable)  # the interpreter this venv was made from
    result = subprocess.run(
        ["bash", str(LANE), str(REPO / "build" / "torch_free_lane")],  # reused while pyproject is unchanged
        cwd=REPO,
        env=_lane_environment(base),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    log = (result.stdout + result.stderr)[-4000:]
    assert result.returncode == 0, log
    assert "torch-free lane: torch is not importable" in result.stdout, log
    assert "torch-free lane: drq upscale wrote 400x300" in result.stdout, log
    assert " passed" in result.stdout and " failed" not in result.stdout, log


@pytest.mark.slow
def test_the_lane_runs_every_file_with_a_torch_free_marker() -> None:
    # The script finds marked files with grep (collecting the whole suite would import torch); every
    # test that pytest itself selects with -m torch_free must sit in one of those files.
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "torch_free",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    ).stdout
    selected = {line.split("::")[0] for line in collected.splitlines() if "::" in line}
    grepped = {
        str(p.relative_to(REPO))
        for p in (REPO / "tests").rglob("test_*.py")
        if "pytest.mark.torch_free" in p.read_text(encoding="utf-8")
    }
    assert "tests/serve/test_tiling.py" in selected
    assert selected <= grepped, sorted(selected - grepped)
