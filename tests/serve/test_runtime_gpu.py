"""Real TensorRT on a GPU (markers tensorrt + gpu; skipped on CPU machines): build -> run -> compare.

Written for a device session (`pytest -m gpu`); nothing here has been run on a GPU yet.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from engine_builder.bench import bench_engines
from engine_builder.build import BuildConfig, build_engine
from engine_builder.calib_cache import CalibCache, write_cache
from serve.runtime.ort import OrtRunner
from serve.runtime.trt import TrtRunner
from tests.fakes.tiny_onnx import float_sr

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]
SHAPES = {"min_shape": (1, 3, 8, 8), "opt_shape": (1, 3, 64, 64), "max_shape": (1, 3, 128, 128)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpu") / "tiny.onnx"
    onnx.save(float_sr(scale=2), path)
    return path


def test_fp32_engine_matches_onnxruntime(tiny: Path):
    engine = tiny.with_name("fp32.plan")
    build_engine(BuildConfig(onnx=tiny, output=engine, **SHAPES))
    x = np.random.default_rng(0).random((1, 3, 40, 56), dtype=np.float32)
    runner = TrtRunner(engine)
    try:
        np.testing.assert_allclose(runner.run(x), OrtRunner(tiny, threads=1).run(x), atol=2e-3, rtol=1e-3)
    finally:
        runner.close()


def test_qdq_graph_builds_and_runs(tmp_path: Path):
    path = tmp_path / "qdq.onnx"
    onnx.save(float_sr(scale=2, qdq=True), path)
    engine = tmp_path / "qdq.plan"
    build_engine(BuildConfig(onnx=path, output=engine, **SHAPES))
    x = np.random.default_rng(1).random((1, 3, 32, 32), dtype=np.float32)
    runner = TrtRunner(engine)
    try:
        np.testing.assert_allclose(runner.run(x), OrtRunner(path, threads=1).run(x), atol=5e-2)
    finally:
        runner.close()


def test_implicit_int8_from_cache_on_10x(tiny: Path):
    import tensorrt

    if not hasattr(tensorrt.BuilderFlag, "INT8"):
        pytest.skip("TensorRT 11: no implicit INT8")
    cache = write_cache(CalibCache({"lr": 1 / 127, "r": 0.05}), tiny.with_name("cal.txt"))
    engine = tiny.with_name("int8.plan")
    result = build_engine(BuildConfig(onnx=tiny, output=engine, calib_cache=cache, fp16=True, **SHAPES))
    assert result.manifest.int8
    runner = TrtRunner(engine)
    x = np.random.default_rng(2).random((1, 3, 32, 32), dtype=np.float32)
    try:
        np.testing.assert_allclose(runner.run(x), OrtRunner(tiny, threads=1).run(x), atol=0.1)
    finally:
        runner.close()


def test_bench_engines_side_by_side(tiny: Path):
    engine = tiny.with_name("fp32.plan")
    if not engine.exists():
        build_engine(BuildConfig(onnx=tiny, output=engine, **SHAPES))
    report = bench_engines({"fp16": engine, "same": engine}, [(64, 64)], warmup=5, iters=20)
    assert [r.name for r in report.rows] == ["fp16", "same"]
    assert all(r.latency.p50_ms > 0 for r in report.rows) and report.rows[0].speedup == 1.0
