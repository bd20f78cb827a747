"""The GPU benchmark: byte accounting on the CPU; the run itself only where a CUDA GPU exists."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.errors import PluginError
from plugins.gpu_bench import BenchConfig, bench_params, bytes_moved, gbps, run_benchmark
from plugins.spec import validate_params


def test_bytes_moved() -> None:
    n = 1 << 28
    assert bytes_moved("dequant", "fp32", n) == 5 * n  # 1 byte code in, 4 bytes out
    assert bytes_moved("dequant", "fp16", n) == 3 * n
    assert bytes_moved("quantize", "fp16", n) == 3 * n
    assert bytes_moved("copy", "int8", n) == 2 * n
    with pytest.raises(PluginError, match="unknown op/dtype 'gather'/'fp32'"):
        bytes_moved("gather", "fp32", n)


def test_gbps() -> None:
    assert gbps(2_000_000_000, 1000.0) == pytest.approx(2.0)
    with pytest.raises(PluginError, match="time must be positive"):
        gbps(1, 0.0)


def test_config_and_params() -> None:
    with pytest.raises(PluginError, match="sizes and counts must be positive"):
        BenchConfig(size_mb=0)
    p = validate_params(bench_params())
    assert p[4] == 63 and np.isclose(p[0] + 63 * p[2], 8.0) and np.isclose(p[0] + 63 * p[3], 4.0)


def test_needs_a_gpu() -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the gpu-marked test runs the benchmark")
    with pytest.raises(PluginError, match=r"kernels --bench: needs a CUDA GPU"):
        run_benchmark(BenchConfig(size_mb=1))


@pytest.mark.gpu
def test_benchmark_on_gpu_is_exact_and_reports_bandwidth() -> None:
    result = run_benchmark(BenchConfig(size_mb=256, iters=10))
    assert result["n_elements"] == 256 << 20 and result["copy"]["gbps"] > 0
    assert set(result["kernels"]) == {"dequant_fp32", "dequant_fp16", "quantize_fp32", "quantize_fp16"}
    for name, row in result["kernels"].items():
        assert row["sample_mismatches"] == 0, name
        assert row["gbps"] > 0 and row["fraction_of_copy"] > 0, name
