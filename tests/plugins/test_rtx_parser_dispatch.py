"""A real ONNX parser (TensorRT-RTX 1.7, onnx-tensorrt of the 10.15+ generation) imports the dual-region
nodes as the registered plugins, with or without the local function bodies in the file, and hands the
`out_dtype` node attribute to the plugin creator (tests/plugins/rtx_dispatch_check.py says how).

Without registered plugins the same parser inlines the bodies or, stripped, fails with "Plugin not
found": test_onnx_function.py::test_tensorrt_rtx_parses_functions_and_needs_plugin_without_them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.rtx
REPO = Path(__file__).resolve().parents[2]


def _dispatch_log(variant: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.plugins.rtx_dispatch_check", variant],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = proc.stdout + proc.stderr
    assert "REGISTERED" in log, log[-3000:]
    # RTX 1.7.1 aborts once the plugin exists (see the script); a clean exit must have parsed
    parsed = proc.returncode == 0 and "PARSED True" in log
    assert parsed or "Successfully created plugin" in log, log[-3000:]
    return log


@pytest.mark.parametrize("variant", ["stripped", "functions"])
def test_registered_plugin_is_imported_instead_of_the_function(variant: str) -> None:
    log = _dispatch_log(variant)
    assert "Found registered plugin: DualRegionQuantize. Importing this node as a plugin." in log
    assert "Successfully created plugin: DualRegionQuantize" in log
    assert "Importing as a local function" not in log


def test_dequant_node_attribute_reaches_the_plugin_creator() -> None:
    log = _dispatch_log("dequant")
    assert "Found registered plugin: DualRegionDequant. Importing this node as a plugin." in log
    assert "FIELDS DualRegionDequant out_dtype=[10]" in log  # TensorProto.FLOAT16, from the node
    assert "Importing as a local function" not in log
