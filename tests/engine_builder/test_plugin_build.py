"""`drq build --plugins drq` and the runtime with the dual-region plugins, against the TensorRT stand-ins.

The TensorRT stand-in's ONNX parser dispatches nodes like onnx-tensorrt's `parseNode` in each TensorRT
generation (tests/fakes/tensorrt/parser.py) and the `tensorrt.plugin` stand-in registers creators where that
parser looks them up, so these tests show which layers the network TensorRT parses really holds:
the plugin node, or the expanded local-function body.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine_builder.build import BuildConfig, build_engine
from engine_builder.errors import BuildError
from plugins import trt_registration
from plugins.onnx_function import (
    attach_functions,
    make_dequant_node,
    make_quantize_node,
    params_initializer,
    strip_functions,
)
from plugins.spec import pack_params
from serve.errors import EngineMismatch
from serve.runtime.trt import TrtRunner
from tests.fakes import cuda as fake_cuda
from tests.fakes import tensorrt as fake_trt
from tests.fakes import tensorrt_plugin as fake_trtp

SHAPES = {"min_shape": (1, 3, 8, 8), "opt_shape": (1, 3, 16, 16), "max_shape": (1, 3, 32, 32)}
PLUGIN_LAYERS = [("plugin", "drq::DualRegionQuantize@1"), ("plugin", "drq::DualRegionDequant@1")]
# ops only the local function bodies contain (plugins.onnx_function): their layers mean "inlined"
BODY_OPS = {"Gather", "Div", "Round", "Clip", "Where", "IsNaN"}


def plugin_model(scale: int = 2) -> onnx.ModelProto:
    """lr -> DualRegionQuantize -> DualRegionDequant -> Conv -> DepthToSpace, with the local functions."""
    params = pack_params(0.5, np.float32(0.5) / np.float32(63), 0.25, 0.125, 63)
    weight = (np.random.default_rng(0).standard_normal((3 * scale * scale, 3, 3, 3)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [
            make_quantize_node("lr", "head.input_params", "codes", name="head.input_DualRegionQuantize"),
            make_dequant_node("codes", "head.input_params", "x_hat", name="head.input_DualRegionDequant"),
            helper.make_node("Conv", ["x_hat", "head.weight"], ["t"], name="/head/Conv", pads=[1, 1, 1, 1]),
            helper.make_node("DepthToSpace", ["t"], ["sr"], name="/ps/DepthToSpace", blocksize=scale),
        ],
        "tiny_plugin_sr",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["N", 3, "SH", "SW"])],
        [params_initializer("head.input_params", params), numpy_helper.from_array(weight, "head.weight")],
    )
    model = attach_functions(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    model.metadata_props.add(key="drq.lowering", value="drq-plugin")
    return model


@pytest.fixture(autouse=True)
def fresh_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trt_registration, "_REGISTERED", {})


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "p.onnx"
    onnx.save(plugin_model(), path)
    return path


def install(monkeypatch: pytest.MonkeyPatch, version: str):
    """Fake CUDA + TensorRT `version` + `tensorrt.plugin` on top of it (AOT from 10.9, as in TensorRT)."""
    rt = fake_cuda.install(monkeypatch)
    trt = fake_trt.install(monkeypatch, version)
    trt.STATE.memory = rt.MEMORY
    major, minor = (int(p) for p in version.split(".")[:2])
    fake_trtp.install(monkeypatch, with_aot=(major, minor) >= (10, 9), trt=trt)
    return trt


def build(path: Path, **kwargs):
    return build_engine(BuildConfig(onnx=path, output=path.with_suffix(".plan"), **SHAPES, **kwargs))


def layers(trt) -> list[tuple[str, str]]:
    (call,) = trt.STATE.named("layers")
    return call.args[0]


@pytest.mark.parametrize("version", ["10.6.0.26", "10.8.0.43", "10.13.0.35", "10.15.1.29", "11.0.0.1"])
def test_drq_build_parses_plugin_nodes_not_function_bodies(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    trt = install(monkeypatch, version)
    result = build(model_path, plugins="drq")
    assert trt.STATE.named("parsed_functions")[0].args == (0,)  # bodies stripped before parsing
    got = layers(trt)
    assert [layer for layer in got if layer[0] == "plugin"] == PLUGIN_LAYERS
    assert not [op for kind, op in got if op in BODY_OPS], got
    assert got[2:] == [("builtin", "Conv"), ("builtin", "DepthToSpace")]
    # the creators were registered before the parser looked them up, by the one registration call
    names = [c.name for c in trt.STATE.calls]
    assert names.index("register_creator") < names.index("parse")
    assert result.manifest.plugins == ("drq::DualRegionDequant", "drq::DualRegionQuantize")
    assert result.manifest.lowering == "drq-plugin"


@pytest.mark.parametrize(
    ("version", "parsed_as"), [("10.6.0.26", "function"), ("10.13.0.35", "plugin"), ("10.15.1.29", "plugin")]
)
def test_parser_order_with_bodies_present(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, parsed_as: str
) -> None:
    """Why `drq build` strips the bodies: with them, TensorRT <= 10.6 expands the function even though
    the plugin is registered (onnx-tensorrt parseNode: local function before the plugin fallback)."""
    trt = install(monkeypatch, version)
    trt_registration.register_dual_region_plugins()
    logger = trt.Logger()
    network = trt.Builder(logger).create_network(0)
    assert trt.OnnxParser(network, logger).parse(model_path.read_bytes(), str(model_path))
    plugin_layers = [layer for layer in network.layers if layer[0] == "plugin"]
    body_layers = [op for _, op in network.layers if op in BODY_OPS]
    if parsed_as == "plugin":
        assert plugin_layers == PLUGIN_LAYERS and not body_layers
    else:
        assert not plugin_layers and {"Div", "Round", "Gather"} <= set(body_layers)


def test_without_plugins_the_bodies_are_inlined(model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trt = install(monkeypatch, "10.13.0.35")
    result = build(model_path)
    assert trt.STATE.named("parsed_functions")[0].args == (2,)
    got = layers(trt)
    assert not [layer for layer in got if layer[0] == "plugin"] and {"Div", "Round"} <= {op for _, op in got}
    assert result.manifest.plugins == ()


def test_stripped_model_without_plugins_fails_the_parse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, "10.13.0.35")
    path = tmp_path / "stripped.onnx"
    onnx.save(strip_functions(plugin_model()), path)
    with pytest.raises(
        BuildError,
        match=r"stripped.onnx: TensorRT's ONNX parser rejected the model: "
        r"In node .* operator: DualRegionQuantize .*Plugin not found",
    ):
        build(path)


def _new_process(monkeypatch: pytest.MonkeyPatch, version: str):
    """A fresh TensorRT with an empty plugin registry and nothing registered by drq, as in a new process."""
    monkeypatch.setattr(trt_registration, "_REGISTERED", {})
    return install(monkeypatch, version)


def test_runtime_registers_plugins_before_deserialising(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(monkeypatch, "10.8.0.43")  # JIT plugins: the engine needs the creators at deserialisation
    engine = build(model_path, plugins="drq").engine
    trt = _new_process(monkeypatch, "10.8.0.43")
    runner = TrtRunner(engine)
    names = [c.name for c in trt.STATE.calls]
    assert names.count("register_creator") == 2
    assert names.index("register_creator") < names.index("deserialize_cuda_engine")
    x = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    assert runner.run(x).shape == (1, 3, 16, 16)
    runner.close()


def test_runtime_without_registration_cannot_deserialise(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The test above can fail: skip the registration and TensorRT cannot find the plugin creators."""
    install(monkeypatch, "10.8.0.43")
    engine = build(model_path, plugins="drq").engine
    _new_process(monkeypatch, "10.8.0.43")
    monkeypatch.setattr(trt_registration, "register_dual_region_plugins", lambda *a, **k: None)
    with pytest.raises(EngineMismatch, match=r"p.plan: TensorRT 10.8.0.43 could not deserialise the engine"):
        TrtRunner(engine)


def test_drq_plugins_refuse_hardware_compatibility(model_path: Path) -> None:
    """The AOT PTX is arch-specific (.target sm_XXa): an AMPERE_PLUS engine would not run elsewhere."""
    with pytest.raises(BuildError, match=r"--plugins drq: cannot be --hardware-compatible"):
        BuildConfig(
            onnx=model_path, output=model_path.with_suffix(".plan"), plugins="drq", hardware_compatible=True
        )


def test_drq_build_command_with_plugins(
    model_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`drq build --plugins drq` end to end through the dispatcher; a conflicting flag is one line, exit 2."""
    from drq.cli import main as drq

    trt = install(monkeypatch, "10.13.0.35")
    shapes = ["--min", "1x3x8x8", "--opt", "1x3x16x16", "--max", "1x3x32x32"]
    out = model_path.with_suffix(".plan")
    assert drq(["build", str(model_path), "-o", str(out), *shapes, "--plugins", "drq"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert [layer for layer in layers(trt) if layer[0] == "plugin"] == PLUGIN_LAYERS
    flags = ["--plugins", "drq", "--hardware-compatible"]
    assert drq(["build", str(model_path), "-o", str(out), *shapes, *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--plugins drq: cannot be --hardware-compatible" in err


def test_aot_plugin_engine_deserialises_without_python_registration(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """AOT plugins are embedded in the plan: "the engine is independent of Python and the plugin source"
    (TensorRT "Adding Custom Layers using the Python API (TensorRT >= 10.6)"), unlike the JIT case above."""
    install(monkeypatch, "10.13.0.35")
    engine = build(model_path, plugins="drq").engine
    trt = _new_process(monkeypatch, "10.13.0.35")
    monkeypatch.setattr(trt_registration, "register_dual_region_plugins", lambda *a, **k: None)
    runner = TrtRunner(engine)
    assert not trt.STATE.named("register_creator")
    x = np.random.default_rng(1).random((1, 3, 8, 8), dtype=np.float32)
    assert runner.run(x).shape == (1, 3, 16, 16)
    runner.close()
