"""The Triton kernels, run in Triton's interpreter on the CPU, equal the NumPy reference bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.plugins.edge_cases import params_sets

pytest.importorskip("triton")
pytest.importorskip("torch")

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def interpreter_results() -> dict[str, int]:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.plugins.interpret_check"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_every_case_ran(interpreter_results: dict[str, int]) -> None:
    # kernels: every params set x 5 shapes x (2 dequant dtypes + 2 quantize dtypes);
    # JIT plugins: every params set x 2 shapes x (2 + 2)
    sets = len(params_sets())
    kernels = [k for k in interpreter_results if not k.startswith("jit/")]
    assert len(kernels) == sets * 5 * 4
    assert len(interpreter_results) - len(kernels) == sets * 2 * 4


@pytest.mark.parametrize("op", ["dequant", "quantize"])
def test_bit_exact_against_reference(interpreter_results: dict[str, int], op: str) -> None:
    bad = {k: v for k, v in interpreter_results.items() if k.startswith(op + "/") and v}
    assert not bad, f"elements differing from plugins.reference: {bad}"


@pytest.mark.parametrize("op", ["dequant", "quantize"])
def test_jit_plugin_impl_is_bit_exact(interpreter_results: dict[str, int], op: str) -> None:
    """`trtp.impl` of both plugins (TensorRT 10.6-10.8), enqueued through the stand-in like TensorRT does,
    writes exactly the reference's values into TensorRT's output buffer (interpret_check.run_jit_plugins)."""
    cases = {k: v for k, v in interpreter_results.items() if k.startswith(f"jit/{op}/")}
    assert len(cases) == len(params_sets()) * 2 * 2
    bad = {k: v for k, v in cases.items() if v}
    assert not bad, f"elements differing from plugins.reference: {bad}"


def test_wrappers_reject_bad_inputs() -> None:
    torch = pytest.importorskip("torch")
    from plugins.errors import PluginError
    from plugins.kernels import dequantize_triton, quantize_triton

    params = torch.tensor([1.0, 1 / 63, 0.5, 0.25, 63.0, 63.0, 63.0])
    with pytest.raises(PluginError, match="dequantize_triton: codes must be torch.int8, got torch.int32"):
        dequantize_triton(torch.zeros(4, dtype=torch.int32), params, torch.empty(4))
    with pytest.raises(PluginError, match=r"quantize_triton: input shape \(4,\) != output shape \(5,\)"):
        quantize_triton(torch.zeros(4), params, torch.empty(5, dtype=torch.int8))
    with pytest.raises(PluginError, match="quantize_triton: x must be contiguous"):
        quantize_triton(torch.zeros(4, 4).t(), params, torch.empty(4, 4, dtype=torch.int8))
    with pytest.raises(PluginError, match=r"must be on one device, got \['cpu', 'meta'\]"):
        quantize_triton(torch.zeros(4), params, torch.empty(4, dtype=torch.int8, device="meta"))
    with pytest.raises(PluginError, match=r"params must have shape \(7,\)"):
        quantize_triton(torch.zeros(4), params[:5], torch.empty(4, dtype=torch.int8))  # schema-1 layout
