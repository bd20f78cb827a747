"""TensorRT Python-plugin registration, checked against a stand-in that enforces the documented API."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from plugins import trt_registration
from plugins.errors import MissingDependency, PluginError
from plugins.trt_registration import DEQUANT_ID, QUANTIZE_ID, register_dual_region_plugins
from tests.fakes import tensorrt_plugin as fake

N_SHAPE = (3, 64, 17, 19)
N = 3 * 64 * 17 * 19


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(trt_registration, "_REGISTERED", {})


@pytest.fixture(scope="module")
def kernel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("triton")
    from plugins.aot import write_kernels

    out = tmp_path_factory.mktemp("kernels")
    write_kernels(out, archs=(90,))
    return out


def _manifest_entry(kernel_dir: Path, op: str, dtype: str) -> dict:
    manifest = json.loads((kernel_dir / "manifest.json").read_text())
    (entry,) = [e for e in manifest["kernels"] if (e["op"], e["dtype"], e["arch"]) == (op, dtype, 90)]
    return entry


def test_missing_tensorrt_raises_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import of tensorrt fails
    with pytest.raises(MissingDependency, match=r"need tensorrt >= 10.6 .*pip install 'drq\[tensorrt\]'"):
        register_dual_region_plugins()


def test_registers_both_plugins_with_documented_signatures(monkeypatch: pytest.MonkeyPatch,
                                                           kernel_dir: Path) -> None:
    trtp = fake.install(monkeypatch)
    reg = register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    assert reg.impl == "aot" and reg.plugin_ids == (DEQUANT_ID, QUANTIZE_ID)
    assert set(trtp.REGISTRY) == {"drq::DualRegionDequant", "drq::DualRegionQuantize"}
    dq, q = trtp.REGISTRY[DEQUANT_ID], trtp.REGISTRY[QUANTIZE_ID]
    assert (dq.tensor_names, dq.attrs) == (["codes", "params"], {"out_dtype": int})
    assert (q.tensor_names, q.attrs) == (["x", "params"], {})
    assert dq.aot_impl_func and q.aot_impl_func and not dq.impl_func and not q.impl_func


def test_descriptors_give_output_dtype_and_shape(monkeypatch: pytest.MonkeyPatch, kernel_dir: Path) -> None:
    trtp = fake.install(monkeypatch)
    register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    codes = fake.TensorDesc(N_SHAPE, fake.DataType.INT8)
    params = fake.TensorDesc((5,), fake.DataType.FLOAT)
    for out_dtype, want in ((1, fake.DataType.FLOAT), (10, fake.DataType.HALF)):
        out = trtp.REGISTRY[DEQUANT_ID].register_func(codes, params, out_dtype)
        assert out.dtype == want and [e.value for e in out.shape_expr] == list(N_SHAPE)
    with pytest.raises(PluginError, match=r"drq::DualRegionDequant: out_dtype must be 1 .* got 7"):
        trtp.REGISTRY[DEQUANT_ID].register_func(codes, params, 7)
    x = fake.TensorDesc(N_SHAPE, fake.DataType.HALF)
    assert trtp.REGISTRY[QUANTIZE_ID].register_func(x, params).dtype == fake.DataType.INT8


def test_autotune_combinations(monkeypatch: pytest.MonkeyPatch, kernel_dir: Path) -> None:
    trtp = fake.install(monkeypatch)
    register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    codes = fake.TensorDesc(N_SHAPE, fake.DataType.INT8)
    params = fake.TensorDesc((5,), fake.DataType.FLOAT)
    out = fake.TensorDesc(N_SHAPE, fake.DataType.HALF)
    (combo,) = trtp.REGISTRY[DEQUANT_ID].autotune_func(codes, params, 10, (out,))
    assert (combo.type_combinations(), combo.layouts) == ([["INT8", "FP32", "FP16"]], ["LINEAR"] * 3)
    (combo,) = trtp.REGISTRY[DEQUANT_ID].autotune_func(codes, params, 1, (out,))
    assert combo.io_types == ["INT8", "FP32", "FP32"]
    (combo,) = trtp.REGISTRY[QUANTIZE_ID].autotune_func(out, params, (codes,))
    assert combo.type_combinations() == [["FP32", "FP32", "INT8"], ["FP16", "FP32", "INT8"]]
    assert combo.layouts == ["LINEAR"] * 3


@pytest.mark.parametrize(("plugin_id", "op", "dtype"), [
    (DEQUANT_ID, "DualRegionDequant", "fp32"), (DEQUANT_ID, "DualRegionDequant", "fp16"),
    (QUANTIZE_ID, "DualRegionQuantize", "fp32"), (QUANTIZE_ID, "DualRegionQuantize", "fp16")])
def test_aot_impl_returns_manifest_kernel(monkeypatch: pytest.MonkeyPatch, kernel_dir: Path, plugin_id: str,
                                          op: str, dtype: str) -> None:
    trtp = fake.install(monkeypatch)
    register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    float_type = fake.DataType.FLOAT if dtype == "fp32" else fake.DataType.HALF
    codes = fake.TensorDesc(N_SHAPE, fake.DataType.INT8)
    floats = fake.TensorDesc(N_SHAPE, float_type)
    params = fake.TensorDesc((5,), fake.DataType.FLOAT)
    inp, out = (codes, floats) if op == "DualRegionDequant" else (floats, codes)
    name, ptx, launch, extra = trtp.REGISTRY[plugin_id].aot_impl_func(inp, params, (out,), 0)
    entry = _manifest_entry(kernel_dir, op, dtype)
    assert name == entry["kernel"]
    assert ptx == (kernel_dir / entry["file"]).read_text()
    assert launch.grid_x.value == -(-N // entry["constexprs"]["BLOCK"]) == 16
    assert (launch.block_x, launch.shared_mem) == (entry["block_x"], entry["shared_mem"])
    # one extra scalar, n_elements, where the manifest puts it (between inputs and outputs)
    assert len(extra) == 1 and extra[0].value == N
    assert [a["role"] for a in entry["args"]] == ["input", "input", "extra", "output"]


def test_registration_is_idempotent(monkeypatch: pytest.MonkeyPatch, kernel_dir: Path) -> None:
    fake.install(monkeypatch)
    first = register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    assert register_dual_region_plugins(kernel_dir=kernel_dir, arch=90) is first
    with pytest.raises(PluginError, match="already registered"):
        register_dual_region_plugins(kernel_dir=kernel_dir, arch=80)


def test_both_registers_jit_and_aot(monkeypatch: pytest.MonkeyPatch, kernel_dir: Path) -> None:
    trtp = fake.install(monkeypatch)
    register_dual_region_plugins(impl="both", kernel_dir=kernel_dir, arch=90)
    for plugin_id in (DEQUANT_ID, QUANTIZE_ID):
        assert trtp.REGISTRY[plugin_id].impl_func and trtp.REGISTRY[plugin_id].aot_impl_func


def test_old_tensorrt_falls_back_to_jit(monkeypatch: pytest.MonkeyPatch) -> None:
    trtp = fake.install(monkeypatch, version="10.8.0", with_aot=False)
    assert register_dual_region_plugins().impl == "jit"
    assert trtp.REGISTRY[DEQUANT_ID].impl_func and trtp.REGISTRY[DEQUANT_ID].aot_impl_func is None


def test_version_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    fake.install(monkeypatch, version="10.8.0", with_aot=False)
    with pytest.raises(PluginError, match=r"impl='aot': AOT Python plugins need TensorRT >= 10.9; "
                                          r"found 10.8.0"):
        register_dual_region_plugins(impl="aot")
    fake.install(monkeypatch, version="10.5.0", with_aot=False)
    with pytest.raises(PluginError, match=r"need TensorRT >= 10.6; found 10.5.0"):
        register_dual_region_plugins()


def test_fake_rejects_string_annotations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in is strict where TensorRT is: postponed (string) annotations fail registration."""
    trtp = fake.install(monkeypatch)

    def desc(inp, n):
        return inp

    desc.__annotations__ = {"inp": "trtp.TensorDesc", "n": "int", "return": "trtp.TensorDesc"}
    with pytest.raises(TypeError, match="not a class"):
        trtp.register("drq::Probe")(desc)
