"""The GPU benchmark: byte accounting on the CPU; the run itself only where a CUDA GPU exists."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.errors import PluginError
from plugins.gpu_bench import (
    DEQUANT_TARGET,
    BenchConfig,
    bench_params,
    bytes_moved,
    gbps,
    run_benchmark,
    summarize,
)
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


def test_summarize_fractions_from_given_timings() -> None:
    """256 MiB of codes; copy 1 ms moves 2n bytes. dequant fp32 moves 5n: 2.5 ms is copy speed (1.0),
    dequant fp16 moves 3n: 2.0 ms is 0.75 of it; quantize fp32 at 5 ms is 0.5."""
    n = 256 << 20
    result = summarize(
        n,
        1.0,
        {"dequant_fp32": 2.5, "dequant_fp16": 2.0, "quantize_fp32": 5.0},
        {"dequant_fp32": 0, "dequant_fp16": 0, "quantize_fp32": 3},
    )
    assert result["copy"] == {"ms": 1.0, "gbps": pytest.approx(2 * n / 1e6)}
    rows = result["kernels"]
    assert rows["dequant_fp32"]["gbps"] == pytest.approx(5 * n / 2.5e6)
    assert rows["dequant_fp32"]["fraction_of_copy"] == pytest.approx(1.0)
    assert rows["dequant_fp16"]["fraction_of_copy"] == pytest.approx(0.75)
    assert rows["quantize_fp32"]["fraction_of_copy"] == pytest.approx(0.5)
    assert rows["quantize_fp32"]["sample_mismatches"] == 3
    # dequant fp16 at 0.75 < 0.85 misses the target
    assert result["target"] == {"dequant_fraction_of_copy": 0.85, "met": False}


@pytest.mark.parametrize(
    ("fp16_ms", "bad", "met"),
    [
        (3 * 1.0 / (2 * (DEQUANT_TARGET + 0.001)), 0, True),  # just above 85 % of copy bandwidth
        (3 * 1.0 / (2 * (DEQUANT_TARGET - 0.001)), 0, False),
        (1.0, 1, False),  # fast but not bit exact
    ],
)
def test_summarize_target(fp16_ms: float, bad: int, met: bool) -> None:
    result = summarize(
        1 << 20, 1.0, {"dequant_fp32": 2.0, "dequant_fp16": fp16_ms}, {"dequant_fp32": 0, "dequant_fp16": bad}
    )
    assert result["target"]["met"] is met


def test_summarize_rejects() -> None:
    with pytest.raises(PluginError, match=r"timed \['dequant_fp32'\] but checked \[\]"):
        summarize(1, 1.0, {"dequant_fp32": 1.0}, {})
    with pytest.raises(PluginError, match="time must be positive, got 0.0 ms"):
        summarize(1, 0.0, {"dequant_fp32": 1.0}, {"dequant_fp32": 0})
    with pytest.raises(PluginError, match="unknown op/dtype 'gather'/'fp32'"):
        summarize(1, 1.0, {"gather_fp32": 1.0}, {"gather_fp32": 0})


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
    # reported, not asserted: the 85 % target is a measured result (drq kernels --bench), not a test
    assert set(result["target"]) == {"dequant_fraction_of_copy", "met"}
