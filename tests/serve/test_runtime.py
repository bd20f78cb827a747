"""TrtRunner against the TensorRT + CUDA stand-ins, and the onnxruntime runner on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from drq.manifest import manifest_path
from engine_builder.build import BuildConfig, build_engine
from serve.errors import EngineMismatch, MissingDependency
from serve.runtime.cuda import load_cuda
from serve.runtime.ort import OrtRunner
from serve.runtime.trt import TrtRunner
from tests.fakes import cuda as fake_cuda
from tests.fakes import tensorrt as fake_trt
from tests.fakes.tiny_onnx import float_sr


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rt = fake_cuda.install(monkeypatch)
    trt = fake_trt.install(monkeypatch, "10.13.0.35")
    trt.STATE.memory = rt.MEMORY
    path = tmp_path / "m.onnx"
    onnx.save(float_sr(), path)
    engine = tmp_path / "m.plan"
    build_engine(
        BuildConfig(
            onnx=path,
            output=engine,
            min_shape=(1, 3, 8, 8),
            opt_shape=(1, 3, 16, 16),
            max_shape=(1, 3, 32, 48),
        )
    )
    trt.STATE.calls.clear()
    return trt, rt, engine


def test_run_allocates_sets_addresses_executes_and_copies_back(world):
    trt, rt, engine = world
    runner = TrtRunner(engine)
    x = np.random.default_rng(0).random((1, 3, 10, 12), dtype=np.float32)
    y = runner.run(x)
    np.testing.assert_array_equal(y, x.repeat(2, axis=2).repeat(2, axis=3))
    mem = rt.MEMORY.calls
    mallocs = [c[1] for c in mem if c[0] == "cudaMalloc"]
    assert mallocs == [x.nbytes, 4 * 3 * 20 * 24]  # input, output: sized from the shapes
    addresses = {c.args[0]: c.args[1] for c in trt.STATE.named("set_tensor_address")}
    assert set(addresses) == {"lr", "sr"} and len(set(addresses.values())) == 2
    stream = next(c[1] for c in mem if c[0] == "cudaStreamCreate")
    assert trt.STATE.named("execute_async_v3")[0].args == (stream,)
    assert trt.STATE.named("set_input_shape")[0].args == ("lr", (1, 3, 10, 12))
    order = [c[0] if c[0] != "cudaMemcpyAsync" else c[1] for c in mem if c[0] != "cudaMalloc"]
    assert order[-3:] == ["cudaMemcpyHostToDevice", "cudaMemcpyDeviceToHost", "cudaStreamSynchronize"]
    assert all(c[3] == stream for c in mem if c[0] == "cudaMemcpyAsync")
    # a smaller input reuses the buffers; a larger one reallocates only what grew
    runner.run(x[:, :, :8, :8])
    runner.run(np.zeros((1, 3, 32, 48), np.float32))
    assert (
        len([c for c in mem if c[0] == "cudaMalloc"]) == 4
        and len([c for c in mem if c[0] == "cudaFree"]) == 2
    )
    runner.close()
    assert not rt.MEMORY.blocks and mem[-1][0] == "cudaStreamDestroy"


def test_input_outside_profile(world):
    _, _, engine = world
    runner = TrtRunner(engine)
    with pytest.raises(EngineMismatch) as info:
        runner.run(np.zeros((1, 3, 64, 64), np.float32))
    assert str(info.value) == (
        f"{engine}: input shape 1x3x64x64 is outside the engine's profile (min 1x3x8x8, "
        "opt 1x3x16x16, max 1x3x32x48); rebuild with drq build --min/--opt/--max"
    )


def test_version_mismatch(world, monkeypatch: pytest.MonkeyPatch):
    _, rt, engine = world
    newer = fake_trt.install(monkeypatch, "10.14.1.0")
    newer.STATE.memory = rt.MEMORY
    with pytest.raises(EngineMismatch) as info:
        TrtRunner(engine)
    assert str(info.value) == (
        f"{engine}: built with tensorrt 10.13.0.35, running 10.14.1.0; rebuild it with "
        "drq build (or --version-compatible)"
    )
    data = json.loads(manifest_path(engine).read_text())
    data["version_compatible"] = True
    manifest_path(engine).write_text(json.dumps(data))
    runner = TrtRunner(engine)  # a later release runs a version-compatible engine, with host code allowed
    assert runner._runtime.engine_host_code_allowed is True
    older = fake_trt.install(monkeypatch, "10.12.0")
    older.STATE.memory = rt.MEMORY
    with pytest.raises(
        EngineMismatch, match=r"built with tensorrt 10.13.0.35, running 10.12.0; rebuild it with drq build$"
    ):
        TrtRunner(engine)  # never on an older one
    eleven = fake_trt.install(monkeypatch, "11.4.0")
    eleven.STATE.memory = rt.MEMORY
    assert TrtRunner(engine).backend.version == "11.4.0"  # across the major boundary too


@pytest.mark.parametrize(
    ("built", "running", "ok"),
    [
        ("10.13.0.35", "10.14.1", True),
        ("10.13.0.35", "11.4.0", True),
        ("8.6.1", "10.13.0", True),
        ("8.6.1", "11.4.0", False),  # "a TensorRT 8 engine cannot run with a TensorRT 11 runtime"
        ("10.13.0.35", "12.0.0", False),
        ("11.4.0", "10.13.0", False),
    ],
)
def test_version_compatible_engines_cross_only_documented_majors(world, built: str, running: str, ok: bool):
    from dataclasses import replace

    from drq.manifest import load_manifest
    from serve.runtime.trt import check_versions

    _, _, engine = world
    manifest = replace(load_manifest(manifest_path(engine)), tensorrt_version=built, version_compatible=True)
    if ok:
        check_versions(engine, manifest, "tensorrt", running)
        return
    with pytest.raises(EngineMismatch, match=rf"{built}.*running {running}; .*rebuild it with drq build$"):
        check_versions(engine, manifest, "tensorrt", running)


def test_gpu_mismatch(world, monkeypatch: pytest.MonkeyPatch):
    _, rt, engine = world
    rt.DEVICE_NAME, rt.CC = "NVIDIA A100", (8, 0)
    with pytest.raises(EngineMismatch) as info:
        TrtRunner(engine)
    assert str(info.value) == (
        "engine built for NVIDIA H200 (sm 9.0); this GPU is NVIDIA A100 (sm 8.0); rebuild "
        "it here or build with --hardware-compatible"
    )


def test_engine_bytes_must_match_manifest(world):
    _, _, engine = world
    engine.write_bytes(engine.read_bytes() + b" ")
    with pytest.raises(EngineMismatch, match="engine bytes differ from its manifest's engine_sha256"):
        TrtRunner(engine)


def test_missing_cuda_binding(monkeypatch: pytest.MonkeyPatch):
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(__import__("sys").modules, name, None)
    with pytest.raises(
        MissingDependency, match=r"pip install 'drq\[cuda\]' \(cuda-python\) or 'drq\[pycuda\]'"
    ):
        load_cuda()
    with pytest.raises(MissingDependency, match=r"needs cuda-python \(pip install 'drq\[cuda\]'\)"):
        load_cuda("cuda-python")


def test_ort_runner_runs_the_float_graph(tmp_path: Path):
    path = tmp_path / "m.onnx"
    onnx.save(float_sr(scale=3), path)
    runner = OrtRunner(path, threads=1)
    y = runner.run(np.random.default_rng(1).random((1, 3, 5, 7), dtype=np.float32))
    assert y.shape == (1, 3, 15, 21) and y.dtype == np.float32
    assert runner.providers == ("CPUExecutionProvider",)
    runner.close()


def test_ort_runner_cuda_provider_missing(tmp_path: Path):
    path = tmp_path / "m.onnx"
    onnx.save(float_sr(), path)
    with pytest.raises(MissingDependency, match="the CUDA execution provider is not available"):
        OrtRunner(path, cuda=True)


def test_pycuda_fallback_runs_the_engine(world, monkeypatch: pytest.MonkeyPatch):
    trt, _, engine = world
    drv = fake_cuda.install_pycuda(monkeypatch)
    trt.STATE.memory = drv.MEMORY
    data = json.loads(manifest_path(engine).read_text())
    data["compute_capability"] = "8.9"  # the fake pycuda device is an L4
    manifest_path(engine).write_text(json.dumps(data))
    runner = TrtRunner(engine)
    assert runner.cuda.name == "pycuda" and runner.cuda.device() == ("NVIDIA L4", "8.9")
    x = np.arange(3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8)
    np.testing.assert_array_equal(runner.run(x), x.repeat(2, axis=2).repeat(2, axis=3))
    calls = [c[0] for c in drv.MEMORY.calls]
    assert calls[:2] == ["init", "Context.push"]
    assert calls[-3:] == ["memcpy_htod_async", "memcpy_dtoh_async", "Stream.synchronize"]
    assert trt.STATE.named("execute_async_v3")[0].args == (runner.stream.handle,)
    assert (
        runner.cuda.event_elapsed_ms(runner.cuda.event_create().record(), runner.cuda.event_create().record())
        == 1.5
    )
    runner.close()
    assert not drv.MEMORY.blocks and drv.MEMORY.calls[-1] == ("Context.pop",)
    runner.close()  # idempotent: the context is popped once
    assert [c for c in drv.MEMORY.calls if c[0].startswith("Context")] == [
        ("Context.push",),
        ("Context.pop",),
    ]


def test_failed_load_pops_the_pycuda_context(world, monkeypatch: pytest.MonkeyPatch):
    trt, _, engine = world
    drv = fake_cuda.install_pycuda(monkeypatch)
    trt.STATE.memory = drv.MEMORY
    with pytest.raises(EngineMismatch, match=r"this GPU is NVIDIA L4 \(sm 8.9\)"):
        TrtRunner(engine, cuda="pycuda")  # built for sm 9.0
    assert [c for c in drv.MEMORY.calls if c[0].startswith("Context")] == [
        ("Context.push",),
        ("Context.pop",),
    ]


def test_rtx_runtime_device_checks():
    from engine_builder.backends.rtx import RTXBackend

    backend = RTXBackend(fake_trt.make_tensorrt("1.7.1", rtx=True))
    backend.check_runtime_device("cpu-build (TensorRT-RTX)", "8.0+", False, ("NVIDIA RTX 4090", "8.9"))
    backend.check_runtime_device("cpu-build (TensorRT-RTX)", "8.6,12.0", False, ("NVIDIA RTX 5090", "12.0"))
    with pytest.raises(
        EngineMismatch, match=r"built for compute capability 8.0\+; this GPU NVIDIA T4 is sm 7.5"
    ):
        backend.check_runtime_device("cpu-build (TensorRT-RTX)", "8.0+", False, ("NVIDIA T4", "7.5"))
    # The RTX support matrix has no Hopper or datacenter Blackwell: a default engine must not pass them.
    for gpu, cc in (("NVIDIA H200", "9.0"), ("NVIDIA B200", "10.0"), ("NVIDIA Thor", "11.0")):
        with pytest.raises(EngineMismatch, match=rf"capability 8.0\+; this GPU {gpu} is sm"):
            backend.check_runtime_device("cpu-build (TensorRT-RTX)", "8.0+", False, (gpu, cc))
    for gpu, cc in (("NVIDIA A100", "8.0"), ("NVIDIA RTX 3090", "8.6"), ("NVIDIA GB10", "12.1")):
        backend.check_runtime_device("cpu-build (TensorRT-RTX)", "8.0+", False, (gpu, cc))
    with pytest.raises(EngineMismatch, match="rebuild with --compute-capability 8.9"):
        backend.check_runtime_device("cpu-build (TensorRT-RTX)", "8.6", False, ("NVIDIA RTX 4090", "8.9"))
    assert backend.features.timing_cache is False and backend.features.calibrators is False


def test_hardware_compatible_engine_runs_on_any_ampere_plus():
    from engine_builder.backends.trt import TensorRTBackend

    backend = TensorRTBackend(fake_trt.make_tensorrt("10.13.0"))
    backend.check_runtime_device("NVIDIA H200", "9.0", True, ("NVIDIA A10", "8.6"))
    with pytest.raises(EngineMismatch, match="engine built hardware-compatible"):
        backend.check_runtime_device("NVIDIA H200", "9.0", True, ("Tesla T4", "7.5"))
