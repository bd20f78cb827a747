"""Real TensorRT-RTX builds on the CPU through `build_engine` (marker rtx; skipped without tensorrt_rtx).

What was measured with tensorrt_rtx 1.7.1 on this CPU-only machine (and is asserted here):
* fp16, qdq (INT8 activations + weights as Q/DQ) and drq-split lowerings of a small SR net all build;
  RTX has no INT8 builder flag, yet it accepts the explicit INT8 Q/DQ graph: the whole network becomes
  one Myelin "ForeignNode" in the CPU (AOT) build and the kernels are chosen by the runtime JIT on the
  GPU, so which precision runs there is not observable here.
* drq-plugin graphs with their ONNX local functions stripped fail to parse (no plugin in RTX):
  "... (checkFallbackPluginImporter): INVALID_NODE: creator && "Plugin not found, ...", reported by
  `build_engine` as one BuildError line.
* timing caches: RTX 1.7.1 writes one, then warns "Failed to deserialize timing cache" when reading it
  back, and its bindings warn "Deprecated in TensorRT-RTX 1.2. Timing cache operations are no-ops";
  `build_engine` therefore refuses --timing-cache on RTX >= 1.2.
* --version-compatible fails the RTX build ("Unable to load library: libnvinfer_lean.so.1") and
  --hardware-compatible is ignored with "setHardwareCompatibilityLevel() is unsupported in TensorRT-RTX";
  both are refused before building.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from drq.manifest import load_manifest, manifest_path
from engine_builder.backends.base import FeatureUnavailable
from engine_builder.build import BuildConfig, build_engine
from engine_builder.errors import BuildError
from tests.fakes.tiny_onnx import float_sr

pytestmark = pytest.mark.rtx
SHAPES = {"min_shape": (1, 3, 8, 8), "opt_shape": (1, 3, 32, 32), "max_shape": (1, 3, 64, 64)}


@pytest.fixture(scope="module")
def lowered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    pytest.importorskip("torch")
    from engine_builder.export.torch_export import export_float_onnx
    from engine_builder.lowerings.common import LoweringOptions
    from engine_builder.lowerings.registry import lower
    from plugins.onnx_function import strip_functions
    from tests.engine_builder.test_export import TinySR, make_recipe

    folder = tmp_path_factory.mktemp("rtx")
    net = TinySR().eval()
    graph = export_float_onnx(net, scale=2)
    out = {}
    for name, budget, options in (
        ("fp16", None, LoweringOptions(io_dtype="fp16")),
        ("qdq", "uniform", LoweringOptions()),
        ("drq-split", "split", LoweringOptions()),
        ("drq-plugin", "b-bit", LoweringOptions()),
    ):
        model = lower(name, graph, make_recipe(net, budget) if budget else None, options)
        if name == "drq-plugin":
            model = strip_functions(model)
        out[name] = folder / f"{name}.onnx"
        onnx.save(model, out[name])
    return out


@pytest.mark.parametrize("lowering", ["fp16", "qdq", "drq-split"])
def test_rtx_builds_engine_and_valid_manifest(lowered: dict[str, Path], lowering: str):
    import tensorrt_rtx

    onnx_path = lowered[lowering]
    result = build_engine(
        BuildConfig(onnx=onnx_path, output=onnx_path.with_suffix(".plan"), backend="tensorrt_rtx", **SHAPES)
    )
    assert result.engine.stat().st_size > 100_000
    manifest = load_manifest(manifest_path(result.engine))
    assert manifest == result.manifest
    assert (manifest.flavour, manifest.tensorrt_version) == ("tensorrt_rtx", tensorrt_rtx.__version__)
    assert (manifest.device, manifest.compute_capability) == ("cpu-build (TensorRT-RTX)", "8.0+")
    assert manifest.lowering == lowering and manifest.strongly_typed
    assert manifest.profile.max == (1, 3, 64, 64)


def test_rtx_stripped_plugin_graph_is_one_line_build_error(lowered: dict[str, Path]):
    onnx_path = lowered["drq-plugin"]
    with pytest.raises(BuildError) as info:
        build_engine(
            BuildConfig(
                onnx=onnx_path, output=onnx_path.with_suffix(".plan"), backend="tensorrt_rtx", **SHAPES
            )
        )
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{onnx_path}: TensorRT's ONNX parser rejected the model: In node 0 ")
    assert "operator: DualRegionQuantize (checkFallbackPluginImporter): INVALID_NODE" in message
    assert "Plugin not found" in message and message.endswith("more)")


def test_rtx_compute_capability_target_and_no_timing_cache(tmp_path: Path):
    path = tmp_path / "tiny.onnx"
    onnx.save(float_sr(qdq=True), path)
    built = build_engine(
        BuildConfig(
            onnx=path,
            output=tmp_path / "a.plan",
            backend="tensorrt_rtx",
            compute_capabilities=("8.6",),
            workspace_mib=64,
            optimization_level=1,
            **SHAPES,
        )
    )
    assert built.manifest.compute_capability == "8.6" and built.engine.stat().st_size > 0
    with pytest.raises(
        FeatureUnavailable,
        match=r"--timing-cache needs TensorRT \(not TensorRT-RTX\) >= 8.0; "
        r"found tensorrt_rtx 1\.",
    ):
        build_engine(
            BuildConfig(
                onnx=path,
                output=tmp_path / "b.plan",
                backend="tensorrt_rtx",
                timing_cache=tmp_path / "t.cache",
                **SHAPES,
            )
        )


def test_features_probed_from_the_real_module():
    import tensorrt_rtx

    from engine_builder.backends.trt import get_backend

    backend = get_backend("tensorrt_rtx")
    f = backend.features
    assert backend.version == tensorrt_rtx.__version__
    assert not f.weak_typing and not f.int8_flag and not f.calibrators and f.always_strongly_typed
    assert f.strongly_typed_flag and f.compute_capability_target and f.optimization_level
    # the module has these attributes, but RTX 1.7.1 cannot honour them (see RTXBackend): refused up front
    assert hasattr(tensorrt_rtx.BuilderFlag, "VERSION_COMPATIBLE") and hasattr(
        tensorrt_rtx, "HardwareCompatibilityLevel"
    )
    assert not f.timing_cache and not f.version_compatible and not f.hardware_compatible


def _params(doc: str, name: str) -> list[list[tuple[str, bool]]]:
    """(parameter name, has a default) without self, for every overload of `name` in a pybind11 docstring."""
    out = []
    for line in (doc or "").splitlines():
        line = line.strip()
        head = line.split(". ", 1)[1] if line[:1].isdigit() and ". " in line else line
        if not head.startswith(f"{name}(") or ") ->" not in head:
            continue
        inside = head[len(name) + 1 : head.rindex(") ->")]
        parts, depth, current = [], 0, ""
        for ch in inside:  # split on commas outside brackets (types like tuple[int, int])
            depth += ch in "[(" and 1 or (ch in "])" and -1 or 0)
            if ch == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += ch
        parts.append(current)
        names = [(p.split(":")[0].split("=")[0].strip(), "=" in p) for p in parts if p.strip()]
        out.append([n for n in names if n[0] != "self"])
    return out


# Every TensorRT member engine_builder calls (build.py, backends/, runtime/trt.py, calibrator.py).
USED_METHODS = {
    "Builder": [
        "__init__",
        "create_network",
        "create_builder_config",
        "create_optimization_profile",
        "build_serialized_network",
    ],
    "IBuilderConfig": [
        "set_flag",
        "set_memory_pool_limit",
        "add_optimization_profile",
        "create_timing_cache",
        "set_timing_cache",
        "get_timing_cache",
        "set_compute_capability",
    ],
    "OnnxParser": ["__init__", "parse", "get_error"],
    "IOptimizationProfile": ["set_shape"],
    "Runtime": ["__init__", "deserialize_cuda_engine"],
    "ICudaEngine": ["create_execution_context", "get_tensor_name", "get_tensor_mode", "get_tensor_dtype"],
    "IExecutionContext": ["set_input_shape", "get_tensor_shape", "set_tensor_address", "execute_async_v3"],
}
USED_PROPERTIES = {
    "IBuilderConfig": [
        "builder_optimization_level",
        "hardware_compatibility_level",
        "num_compute_capabilities",
    ],
    "OnnxParser": ["num_errors"],
    "Runtime": ["engine_host_code_allowed"],
    "ICudaEngine": ["num_io_tensors", "device_memory_size_v2"],
}


def test_stand_in_signatures_match_the_real_bindings():
    """The stand-in's parameter names are those of the real bindings (TensorRT-RTX follows the 10.x/11.x
    Python API), so a keyword the real TensorRT would reject also fails against the stand-in."""
    import inspect

    import tensorrt_rtx

    from tests.fakes.tensorrt import make_tensorrt

    fake = make_tensorrt("1.7.1", rtx=True)
    for cls_name, methods in USED_METHODS.items():
        real, fake_cls = getattr(tensorrt_rtx, cls_name), getattr(fake, cls_name)
        for method in methods:
            overloads = _params(getattr(real, method).__doc__, method)
            assert overloads, f"{cls_name}.{method}: no signature in the real docstring"
            fake_params = [p for p in inspect.signature(getattr(fake_cls, method)).parameters if p != "self"]
            # the stand-in may leave out trailing parameters that have defaults in the real binding
            fits = any(
                [n for n, _ in real_params[: len(fake_params)]] == fake_params
                and all(default for _, default in real_params[len(fake_params) :])
                for real_params in overloads
            )
            assert fits, f"{cls_name}.{method}: stand-in {fake_params}, real {overloads}"
    for cls_name, props in USED_PROPERTIES.items():
        for prop in props:
            assert isinstance(getattr(getattr(tensorrt_rtx, cls_name), prop), property), f"{cls_name}.{prop}"
    for enum_name, member in [
        ("BuilderFlag", "VERSION_COMPATIBLE"),
        ("HardwareCompatibilityLevel", "AMPERE_PLUS"),
        ("MemoryPoolType", "WORKSPACE"),
        ("NetworkDefinitionCreationFlag", "STRONGLY_TYPED"),
        ("TensorIOMode", "INPUT"),
        ("ComputeCapability", "SM86"),
    ]:
        assert hasattr(getattr(tensorrt_rtx, enum_name), member), f"{enum_name}.{member}"
    assert callable(tensorrt_rtx.nptype) and hasattr(tensorrt_rtx.ITimingCache, "serialize")
