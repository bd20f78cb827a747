"""build_engine against the TensorRT stand-in: what the builder asked TensorRT to do, per version."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest

from drq.errors import MissingDependency
from drq.manifest import load_manifest
from engine_builder.backends.base import FeatureUnavailable, import_tensorrt
from engine_builder.build import BuildConfig, build_engine, layers_path, parse_shape
from engine_builder.calib_cache import CalibCache, write_cache
from engine_builder.errors import BuildError
from serve.errors import RunnerError
from tests.fakes import cuda as fake_cuda
from tests.fakes import tensorrt as fake_trt
from tests.fakes.tiny_onnx import float_sr

SHAPES = {"min_shape": (1, 3, 64, 64), "opt_shape": (1, 3, 256, 256), "max_shape": (1, 3, 540, 960)}


@pytest.fixture
def model(tmp_path: Path) -> Path:
    path = tmp_path / "m.onnx"
    onnx.save(float_sr(qdq=True), path)
    return path


def install(monkeypatch: pytest.MonkeyPatch, version: str = "10.13.0.35", rtx: bool = False):
    fake_cuda.install(monkeypatch)
    return fake_trt.install(monkeypatch, version, rtx)


def config(model: Path, **kwargs) -> BuildConfig:
    return BuildConfig(onnx=model, output=model.with_suffix(".plan"), **{**SHAPES, **kwargs})


def test_parse_shape():
    assert parse_shape("1x3x64x64") == (1, 3, 64, 64)
    with pytest.raises(BuildError, match=r"--min '1x3xax4': expected positive integers joined by 'x'"):
        parse_shape("1x3xax4", "--min")
    with pytest.raises(BuildError, match="expected positive integers"):
        parse_shape("1x0x4x4")


def test_tensorrt_10_build_records_every_setting(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch, "10.13.0.35")
    cache = model.parent / "timing.cache"
    result = build_engine(
        config(
            model,
            workspace_mib=512,
            optimization_level=5,
            timing_cache=cache,
            version_compatible=True,
            hardware_compatible=True,
        )
    )
    s = trt.STATE
    assert s.named("create_network")[0].args == (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),)
    assert s.named("set_shape")[0].args == ("lr", (1, 3, 64, 64), (1, 3, 256, 256), (1, 3, 540, 960))
    assert s.named("set_memory_pool_limit")[0].args == ("WORKSPACE", 512 << 20)
    assert s.named("builder_optimization_level")[0].args == (5,)
    assert [c.args for c in s.named("set_flag")] == [("VERSION_COMPATIBLE",)]
    assert s.named("hardware_compatibility_level")[0].args == ("AMPERE_PLUS",)
    assert s.named("create_timing_cache")[0].args == (b"",)
    assert s.named("set_timing_cache")[0].args == (False,)
    assert s.named("parse")[0].args[1] == str(model)
    assert result.timing_cache_saved and cache.read_bytes() == b"|timings"
    m = load_manifest(result.manifest_file)
    assert result.manifest_file == model.parent / "m.plan.json"
    assert (m.flavour, m.tensorrt_version, m.device, m.compute_capability) == (
        "tensorrt",
        "10.13.0.35",
        "NVIDIA H200",
        "9.0",
    )
    assert (m.lowering, m.recipe_sha256, m.input_name) == ("qdq", "ab" * 32, "lr")
    assert (m.profile.min, m.profile.max) == ((1, 3, 64, 64), (1, 3, 540, 960))
    assert m.strongly_typed and not m.fp16 and not m.int8 and m.version_compatible and m.hardware_compatible
    assert result.engine.read_bytes().startswith(b"FAKEPLAN")


def test_timing_cache_is_reused_across_builds(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch)
    cache = model.parent / "t.cache"
    build_engine(config(model, timing_cache=cache))
    build_engine(config(model, timing_cache=cache))
    loaded = [c.args[0] for c in trt.STATE.named("create_timing_cache")]
    assert loaded == [b"", b"|timings"]  # the second build starts from the first one's timings
    assert cache.read_bytes() == b"|timings|timings"


def test_timing_cache_of_another_device_is_refused_in_one_line(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch)
    cache = model.parent / "other_gpu.cache"
    cache.write_bytes(b"timings from elsewhere")
    trt.STATE.refuse_timing_cache = True
    with pytest.raises(BuildError) as info:
        build_engine(config(model, timing_cache=cache))
    assert str(info.value) == (
        f"{cache}: TensorRT refused the timing cache (another TensorRT version or GPU); "
        "delete it to start a new one"
    )
    assert cache.read_bytes() == b"timings from elsewhere" and not model.with_suffix(".plan").exists()


def test_fp16_and_calibrator_make_a_weakly_typed_10x_network(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch, "10.8.0")
    cal = write_cache(CalibCache({"lr": 0.02}, 8601), model.parent / "cal.txt")
    result = build_engine(config(model, fp16=True, calib_cache=cal))
    s = trt.STATE
    assert s.named("create_network")[0].args == (0,)
    assert [c.args[0] for c in s.named("set_flag")] == ["FP16", "INT8"]
    assert s.named("int8_calibrator")[0].args == ("IInt8EntropyCalibrator2",)
    # dynamic input + calibrator: the calibration profile is the build's (set_calibration_profile)
    assert s.named("set_calibration_profile")[0].args == (
        {"lr": ((1, 3, 64, 64), (1, 3, 256, 256), (1, 3, 540, 960))},
    )
    served = s.named("read_calibration_cache")[0].args[0].decode()
    assert served == "TRT-100800-EntropyCalibration2\nlr: 3ca3d70a\n"
    assert result.manifest.fp16 and result.manifest.int8 and not result.manifest.strongly_typed


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"fp16": True}, "--fp16 (BuilderFlag.FP16)"),
        ({"int8": True}, "INT8 weak typing (BuilderFlag.INT8)"),
    ],
)
def test_tensorrt_11_refuses_weak_typing_flags(model: Path, monkeypatch: pytest.MonkeyPatch, kwargs, what):
    trt = install(monkeypatch, "11.4.0")
    with pytest.raises(FeatureUnavailable) as info:
        build_engine(config(model, **kwargs))
    assert str(info.value) == f"{what} needs TensorRT <= 10.x; found tensorrt 11.4.0"
    assert not trt.STATE.named("create_network")  # refused before any TensorRT work


def test_tensorrt_11_refuses_calibration_cache(model: Path, monkeypatch: pytest.MonkeyPatch):
    install(monkeypatch, "11.4.0")
    cal = write_cache(CalibCache({"lr": 0.02}), model.parent / "cal.txt")
    with pytest.raises(
        FeatureUnavailable,
        match=r"^INT8 weak typing \(BuilderFlag.INT8\) needs TensorRT <= 10.x; "
        r"found tensorrt 11.4.0$",
    ):
        build_engine(config(model, calib_cache=cal))


def test_int8_flag_without_cache_sets_no_calibrator(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch, "10.8.0")
    result = build_engine(config(model, int8=True))
    assert [c.args[0] for c in trt.STATE.named("set_flag")] == ["INT8"]
    assert not trt.STATE.named("int8_calibrator") and result.manifest.int8


def test_tensorrt_11_network_is_strongly_typed(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch, "11.4.0")
    result = build_engine(config(model))
    assert trt.STATE.named("create_network")[0].args == (
        1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED),
    )
    assert result.manifest.strongly_typed


def test_tensorrt_11_keeps_compatibility_timing_and_memory_options(
    model: Path, monkeypatch: pytest.MonkeyPatch
):
    # 11.x removed weak typing, not these: VERSION_COMPATIBLE, hardware_compatibility_level, timing caches,
    # the workspace pool and the optimization level stay (Removed Python APIs in TensorRT 11.x).
    trt = install(monkeypatch, "11.4.0")
    cache = model.parent / "timing11.cache"
    for _ in range(2):
        result = build_engine(
            config(
                model,
                workspace_mib=256,
                optimization_level=4,
                timing_cache=cache,
                version_compatible=True,
                hardware_compatible=True,
            )
        )
    s = trt.STATE
    assert [c.args for c in s.named("set_flag")] == [("VERSION_COMPATIBLE",)] * 2
    assert [c.args for c in s.named("hardware_compatibility_level")] == [("AMPERE_PLUS",)] * 2
    assert s.named("set_memory_pool_limit")[0].args == ("WORKSPACE", 256 << 20)
    assert s.named("builder_optimization_level")[0].args == (4,)
    assert [c.args[0] for c in s.named("create_timing_cache")] == [b"", b"|timings"]  # reused
    m = result.manifest
    assert m.strongly_typed and m.version_compatible and m.hardware_compatible and not (m.fp16 or m.int8)


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"version_compatible": True}, "--version-compatible needs TensorRT (not TensorRT-RTX) >= 8.6"),
        ({"hardware_compatible": True}, "--hardware-compatible needs TensorRT (not TensorRT-RTX) >= 8.6"),
        ({"timing_cache": Path("t.cache")}, "--timing-cache needs TensorRT (not TensorRT-RTX) >= 8.0"),
        ({"fp16": True}, "--fp16 (BuilderFlag.FP16) needs TensorRT (not TensorRT-RTX) <= 10.x"),
    ],
)
def test_rtx_refuses_what_it_cannot_honour(model: Path, monkeypatch: pytest.MonkeyPatch, kwargs, what):
    # RTX 1.7.1 has the attributes but fails (VERSION_COMPATIBLE: lean runtime missing) or ignores them
    # (hardware level, timing cache no-ops), measured in test_rtx_build; refused before any TensorRT work.
    trt = install(monkeypatch, "1.7.1.116", rtx=True)
    with pytest.raises(FeatureUnavailable) as info:
        build_engine(config(model, backend="tensorrt_rtx", **kwargs))
    assert str(info.value) == f"{what}; found tensorrt_rtx 1.7.1.116"
    assert not trt.STATE.named("create_network")


def test_rtx_sets_compute_capabilities_and_records_cpu_build(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch, "1.7.1.116", rtx=True)
    result = build_engine(config(model, backend="tensorrt_rtx", compute_capabilities=("8.6", "sm120")))
    s = trt.STATE
    assert s.named("num_compute_capabilities")[0].args == (2,)
    assert [c.args for c in s.named("set_compute_capability")] == [("SM86", 0), ("SM120", 1)]
    assert (result.manifest.device, result.manifest.compute_capability) == (
        "cpu-build (TensorRT-RTX)",
        "8.6,sm120",
    )


def test_rtx_unknown_compute_capability(model: Path, monkeypatch: pytest.MonkeyPatch):
    install(monkeypatch, "1.7.1", rtx=True)
    with pytest.raises(
        FeatureUnavailable,
        match=r"compute capability '9.0': not a target of this TensorRT-RTX; "
        "choose from SM75, SM80, SM86, SM89, SM120, CURRENT",
    ):
        build_engine(config(model, backend="tensorrt_rtx", compute_capabilities=("9.0",)))


def test_full_tensorrt_cannot_target_compute_capabilities(model: Path, monkeypatch: pytest.MonkeyPatch):
    install(monkeypatch)
    with pytest.raises(
        FeatureUnavailable, match=r"--compute-capability \(build for another GPU\) needs TensorRT"
    ):
        build_engine(config(model, compute_capabilities=("8.6",)))


def test_parser_errors_become_one_line(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch)
    trt.STATE.parse_errors = [
        "In node 3 (importFallback): plugin not found\n  drq::DualRegionDequant",
        "b",
        "c",
        "d",
        "e",
    ]
    with pytest.raises(BuildError) as info:
        build_engine(config(model))
    assert str(info.value) == (
        f"{model}: TensorRT's ONNX parser rejected the model: In node 3 (importFallback): "
        "plugin not found drq::DualRegionDequant; b; c; (2 more)"
    )
    assert not model.with_suffix(".plan").exists()


def test_failed_build_reports_last_logged_error(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch)
    trt.STATE.fail_build = "Error Code 4: Internal Error (no implementation for Conv)"
    with pytest.raises(
        BuildError, match=r"TensorRT 10.13.0.35 built no engine: Error Code 4: Internal Error"
    ):
        build_engine(config(model))
    assert not model.with_suffix(".plan").exists() and not (model.parent / "m.plan.json").exists()


def test_dynamic_input_needs_shapes(model: Path, monkeypatch: pytest.MonkeyPatch):
    install(monkeypatch)
    with pytest.raises(
        BuildError, match=r"input 'lr' has dynamic shape \[-1, 3, -1, -1\]; give --min/--opt/--max"
    ):
        build_engine(BuildConfig(onnx=model, output=model.with_suffix(".plan")))
    with pytest.raises(BuildError, match=r"--min/--opt/--max 1x4x64x64: does not fit input 'lr'"):
        build_engine(
            config(model, min_shape=(1, 4, 64, 64), opt_shape=(1, 4, 64, 64), max_shape=(1, 4, 64, 64))
        )


def test_config_validation(model: Path):
    with pytest.raises(BuildError, match="give all three shapes or none"):
        BuildConfig(onnx=model, output=Path("x.plan"), min_shape=(1, 3, 8, 8))
    with pytest.raises(BuildError, match=r"--min/--opt/--max: need min <= opt <= max"):
        BuildConfig(
            onnx=model,
            output=Path("x.plan"),
            min_shape=(1, 3, 8, 8),
            opt_shape=(1, 3, 4, 4),
            max_shape=(1, 3, 16, 16),
        )
    with pytest.raises(BuildError, match="--opt-level: must be in 0..5, got 7"):
        config(model, optimization_level=7)
    with pytest.raises(BuildError, match="is the input model"):
        BuildConfig(onnx=model, output=model)


def test_plugin_hook_runs_and_functions_are_stripped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch)
    path = tmp_path / "p.onnx"
    onnx.save(float_sr(plugin_node=True), path)
    ran = []

    def register() -> None:
        ran.append(True)
        creator = SimpleNamespace(name="DualRegionDequant", plugin_version="1")
        trt.get_plugin_registry().register_creator(creator, "drq")

    result = build_engine(config(path, plugins=register))
    assert ran == [True]
    assert trt.STATE.named("parsed_functions")[0].args == (0,)  # local function removed before parsing
    assert ("plugin", "drq::DualRegionDequant@1") in trt.STATE.named("layers")[0].args[0]
    assert result.manifest.plugins == ("register",)
    trt.STATE.calls.clear()
    build_engine(config(path))  # no plugins: the function body stays for the parser to inline
    assert trt.STATE.named("parsed_functions")[0].args == (1,)


def test_drq_plugins_need_full_tensorrt(model: Path, monkeypatch: pytest.MonkeyPatch):
    install(monkeypatch, "1.7.1", rtx=True)
    with pytest.raises(FeatureUnavailable, match=r"--plugins drq \(TensorRT Python plugins\) needs TensorRT"):
        build_engine(config(model, backend="tensorrt_rtx", plugins="drq"))


def test_missing_tensorrt_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    with pytest.raises(MissingDependency, match=r"pip install 'drq\[tensorrt\]'"):
        import_tensorrt("tensorrt")
    with pytest.raises(RunnerError, match="backend 'trt': unknown; choose from tensorrt, tensorrt_rtx"):
        import_tensorrt("trt")  # type: ignore[arg-type]


def test_unreadable_onnx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    install(monkeypatch)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff\x00garbage")
    with pytest.raises(BuildError, match=r"bad.onnx: not a readable ONNX model"):
        build_engine(config(bad))
    with pytest.raises(BuildError, match=r"none.onnx: no such ONNX file"):
        build_engine(config(tmp_path / "none.onnx"))


def test_manifest_json_is_plain(model: Path, monkeypatch: pytest.MonkeyPatch):
    install(monkeypatch)
    result = build_engine(config(model))
    data = json.loads(result.manifest_file.read_text())
    assert data["profile"] == {"min": [1, 3, 64, 64], "opt": [1, 3, 256, 256], "max": [1, 3, 540, 960]}
    assert data["schema_version"] == 1


def test_missing_cuda_binding_fails_before_the_build(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = fake_trt.install(monkeypatch, "10.13.0.35")  # full TensorRT, but no CUDA binding at all
    for name in ("cuda", "cuda.bindings", "cuda.bindings.runtime", "cuda.cudart", "pycuda", "pycuda.driver"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingDependency, match="needs a CUDA binding"):
        build_engine(config(model))
    assert trt.STATE.named("build_serialized_network") == []  # no engine was built and thrown away
    assert not model.with_suffix(".plan").exists()


def test_device_query_through_pycuda_pops_its_context(model: Path, monkeypatch: pytest.MonkeyPatch):
    fake_trt.install(monkeypatch, "10.13.0.35")
    drv = fake_cuda.install_pycuda(monkeypatch)
    result = build_engine(config(model))
    assert (result.manifest.device, result.manifest.compute_capability) == ("NVIDIA L4", "8.9")
    assert [c for c in drv.MEMORY.calls if c[0].startswith("Context")] == [
        ("Context.push",),
        ("Context.pop",),
    ]


def test_detailed_profiling_and_engine_inspector_json(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch, "11.4.0")
    result = build_engine(config(model))
    assert trt.STATE.named("profiling_verbosity")[0].args == ("DETAILED",)
    # written beside the engine, from an inspector that had an execution context with the opt shape
    assert trt.STATE.named("get_engine_information")[0].args == ("JSON", True)
    info = json.loads(layers_path(result.engine).read_text())
    layers = {layer["Name"]: layer for layer in info["Layers"]}
    assert layers["/head/Conv"]["LayerType"] == "Conv"
    assert layers["/head/Conv"]["Inputs"][0] == {
        "Name": "dq",
        "Format/Datatype": "Row major linear FP32 format",
    }
    assert info["Bindings"] == ["lr", "sr"]


def test_without_a_runtime_that_loads_the_engine_no_layer_file(model: Path, monkeypatch: pytest.MonkeyPatch):
    trt = install(monkeypatch, "11.4.0")
    monkeypatch.setattr(trt.Runtime, "deserialize_cuda_engine", lambda self, data: None)
    result = build_engine(config(model))
    assert not layers_path(result.engine).exists() and result.engine.is_file()
    assert result.layers_note.startswith("engine inspector unavailable on this machine")
