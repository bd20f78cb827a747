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


def test_registers_both_plugins_with_documented_signatures(
    monkeypatch: pytest.MonkeyPatch, kernel_dir: Path
) -> None:
    trtp = fake.install(monkeypatch)
    reg = register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    assert reg.impl == "aot" and reg.plugin_ids == (DEQUANT_ID, QUANTIZE_ID)
    # the stand-in is the targeted release; the registration records the TensorRT it found
    assert reg.tensorrt_version == trt_registration.TARGET_TENSORRT == "10.13.0"
    assert set(trtp.REGISTRY) == {"drq::DualRegionDequant", "drq::DualRegionQuantize"}
    dq, q = trtp.REGISTRY[DEQUANT_ID], trtp.REGISTRY[QUANTIZE_ID]
    assert (dq.tensor_names, dq.attrs) == (["codes", "params"], {"out_dtype": int})
    assert (q.tensor_names, q.attrs) == (["x", "params"], {})
    assert dq.aot_impl_func and q.aot_impl_func and not dq.impl_func and not q.impl_func


def test_descriptors_give_output_dtype_and_shape(monkeypatch: pytest.MonkeyPatch, kernel_dir: Path) -> None:
    trtp = fake.install(monkeypatch)
    register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    codes = fake.TensorDesc(N_SHAPE, fake.DataType.INT8)
    params = fake.TensorDesc((7,), fake.DataType.FLOAT)
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
    params = fake.TensorDesc((7,), fake.DataType.FLOAT)
    out = fake.TensorDesc(N_SHAPE, fake.DataType.HALF)
    (combo,) = trtp.REGISTRY[DEQUANT_ID].autotune_func(codes, params, 10, (out,))
    assert (combo.type_combinations(), combo.layouts) == ([["INT8", "FP32", "FP16"]], ["LINEAR"] * 3)
    (combo,) = trtp.REGISTRY[DEQUANT_ID].autotune_func(codes, params, 1, (out,))
    assert combo.io_types == ["INT8", "FP32", "FP32"]
    (combo,) = trtp.REGISTRY[QUANTIZE_ID].autotune_func(out, params, (codes,))
    assert combo.type_combinations() == [["FP32", "FP32", "INT8"], ["FP16", "FP32", "INT8"]]
    assert combo.layouts == ["LINEAR"] * 3


@pytest.mark.parametrize(
    ("plugin_id", "op", "dtype"),
    [
        (DEQUANT_ID, "DualRegionDequant", "fp32"),
        (DEQUANT_ID, "DualRegionDequant", "fp16"),
        (QUANTIZE_ID, "DualRegionQuantize", "fp32"),
        (QUANTIZE_ID, "DualRegionQuantize", "fp16"),
    ],
)
def test_aot_impl_returns_manifest_kernel(
    monkeypatch: pytest.MonkeyPatch, kernel_dir: Path, plugin_id: str, op: str, dtype: str
) -> None:
    fake.install(monkeypatch)
    register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    float_type = fake.DataType.FLOAT if dtype == "fp32" else fake.DataType.HALF
    codes = fake.TensorDesc(N_SHAPE, fake.DataType.INT8)
    floats = fake.TensorDesc(N_SHAPE, float_type)
    params = fake.TensorDesc((7,), fake.DataType.FLOAT)
    inp, out = (codes, floats) if op == "DualRegionDequant" else (floats, codes)
    attrs = {"out_dtype": 1 if dtype == "fp32" else 10} if op == "DualRegionDequant" else {}
    # run_aot_impl also checks the PTX .entry against what TensorRT's launcher passes:
    # (u64 codes/x, u64 params, u32 n_elements, u64 out), named like the returned kernel
    name, ptx, launch, extra = fake.run_aot_impl(plugin_id, [inp, params], [out], attrs)
    assert fake.ptx_entry(ptx) == (name, ["u64", "u64", "u32", "u64"])
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
    with pytest.raises(
        PluginError,
        match=r"impl='aot': AOT Python plugins need TensorRT >= 10.9; "
        r"found 10.8.0",
    ):
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


def test_stand_in_rejects_a_wrong_aot_kernel_signature(
    monkeypatch: pytest.MonkeyPatch, kernel_dir: Path
) -> None:
    """The PTX check of run_aot_impl can fail: a kernel whose .entry takes n_elements as 64 bits."""
    trtp = fake.install(monkeypatch)
    register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    real = trtp.REGISTRY[DEQUANT_ID].aot_impl_func

    def widened(codes, params, outputs, tactic):
        name, ptx, launch, extra = real(codes, params, outputs, tactic)
        return name, ptx.replace(".param .u32", ".param .u64", 1), launch, extra

    trtp.REGISTRY[DEQUANT_ID].aot_impl_func = widened
    codes = fake.TensorDesc(N_SHAPE, fake.DataType.INT8)
    params = fake.TensorDesc((7,), fake.DataType.FLOAT)
    out = fake.TensorDesc(N_SHAPE, fake.DataType.FLOAT)
    with pytest.raises(ValueError, match=r"PTX entry parameters \['u64', 'u64', 'u64', 'u64'\], TensorRT"):
        fake.run_aot_impl(DEQUANT_ID, [codes, params], [out], {"out_dtype": 1})


def test_jit_impl_has_the_documented_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    """`impl`: (inputs: Tensor..., outputs: Tuple[Tensor], stream: int) -> None; `out_dtype` is not
    declared, so TensorRT does not serialise it for the JIT plugin (the output buffer's dtype decides)."""
    import inspect
    import typing

    trtp = fake.install(monkeypatch, version="10.8.0", with_aot=False)
    register_dual_region_plugins()
    for plugin_id, first in ((DEQUANT_ID, "codes"), (QUANTIZE_ID, "x")):
        sig = inspect.signature(trtp.REGISTRY[plugin_id].impl_func)
        assert list(sig.parameters) == [first, "params", "outputs", "stream"]
        assert sig.parameters[first].annotation is trtp.Tensor
        assert typing.get_args(sig.parameters["outputs"].annotation) == (trtp.Tensor,)
        assert sig.parameters["stream"].annotation is int and sig.return_annotation is None


@pytest.mark.parametrize(
    ("params", "ret", "message"),
    [
        ("inp, outputs", None, r"\['inp', 'outputs'\] does not match \['inp', 'outputs', 'stream'\]"),
        ("inp, outputs, stream, tactic, extra", None, "does not match"),
        ("inp, stream, outputs", None, "does not match"),
        ("inp, outputs, stream", int, "Return annotation should be None"),
    ],
)
def test_stand_in_enforces_the_impl_schema(
    monkeypatch: pytest.MonkeyPatch, params: str, ret: type | None, message: str
) -> None:
    trtp = fake.install(monkeypatch)

    def desc(inp):
        return inp

    desc.__annotations__ = {"inp": trtp.TensorDesc, "return": trtp.TensorDesc}
    trtp.register("drq::Probe")(desc)
    namespace: dict = {}
    exec(f"def impl({params}):\n    return None", namespace)
    impl = namespace["impl"]
    impl.__annotations__ = {"return": ret}
    with pytest.raises(ValueError, match=message):
        trtp.impl("drq::Probe")(impl)


def test_stand_in_rejects_impl_with_device_descriptors(monkeypatch: pytest.MonkeyPatch) -> None:
    """impl receives Tensors (data), not TensorDescs; outputs must be Tuple[Tensor]."""
    trtp = fake.install(monkeypatch)

    def desc(inp):
        return inp

    desc.__annotations__ = {"inp": trtp.TensorDesc, "return": trtp.TensorDesc}
    trtp.register("drq::Probe")(desc)

    def impl(inp, outputs, stream):
        return None

    impl.__annotations__ = {"inp": trtp.Tensor, "outputs": tuple[trtp.TensorDesc], "stream": int}
    with pytest.raises(ValueError, match=r"'outputs' should be a Tuple\[Tensor\]"):
        trtp.impl("drq::Probe")(impl)


def test_jit_impl_launches_the_wrapper_on_tensorrts_buffers(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JIT impl hands zero-copy views of TensorRT's buffers (inputs, params, output) to the kernel
    wrapper of its op. (Bit exactness of the same path: test_kernels_interpreter, which needs a fresh
    process for Triton's interpreter.)"""
    torch = pytest.importorskip("torch")
    pytest.importorskip("triton")
    import numpy as np

    from plugins import kernels

    fake.install(monkeypatch, version="10.8.0", with_aot=False)
    register_dual_region_plugins()
    seen = []

    def record(name):
        def wrapper(inp, params, out):
            seen.append((name, inp, params, out))
            out.fill_(3)  # the impl's write must land in TensorRT's output buffer
            return out

        return wrapper

    monkeypatch.setattr(kernels, "dequantize_triton", record("dequantize_triton"))
    monkeypatch.setattr(kernels, "quantize_triton", record("quantize_triton"))
    codes = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    params = np.array([1.0, 1 / 63, 0.5, 0.25, 63.0, 63.0, 63.0], np.float32)
    out = np.zeros((3, 4), np.float16)
    fake.run_impl(
        DEQUANT_ID,
        [fake.Tensor(codes), fake.Tensor(params)],
        [fake.Tensor(out)],
        {"out_dtype": 10},
        stream=11,
    )
    q = np.zeros((3, 4), np.int8)
    fake.run_impl(QUANTIZE_ID, [fake.Tensor(out), fake.Tensor(params)], [fake.Tensor(q)], {}, stream=11)
    assert [s[0] for s in seen] == ["dequantize_triton", "quantize_triton"]
    for (_, inp, par, res), arrays in zip(seen, ((codes, params, out), (out, params, q)), strict=True):
        assert [t.data_ptr() for t in (inp, par, res)] == [a.ctypes.data for a in arrays]
        want = {np.dtype(np.float16): torch.float16, np.dtype(np.int8): torch.int8}[arrays[2].dtype]
        assert res.dtype == want
    assert (out == 3).all() and (q == 3).all()


def test_jit_impl_rejects_a_buffer_it_cannot_view(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(PluginError, match=r"cannot view a object as a tensor \(neither __cuda_array"):
        trt_registration._torch_view(torch, object())


def test_aot_impl_compiles_for_the_given_arch_without_a_kernel_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """kernel_dir=None: aot_impl compiles the Triton kernel during the build (here for sm_90, on the CPU)."""
    pytest.importorskip("triton")
    fake.install(monkeypatch)
    register_dual_region_plugins(arch=90)
    x = fake.TensorDesc(N_SHAPE, fake.DataType.HALF)
    params = fake.TensorDesc((7,), fake.DataType.FLOAT)
    codes = fake.TensorDesc(N_SHAPE, fake.DataType.INT8)
    name, ptx, launch, extra = fake.run_aot_impl(QUANTIZE_ID, [x, params], [codes], {})
    assert name == "dual_region_quantize_kernel" and ".target sm_90a" in ptx and "ld.global" in ptx
    assert launch.grid_x.value == 16 and extra[0].value == N


def test_aot_impl_without_gpu_or_arch_says_what_to_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: its architecture is used")
    fake.install(monkeypatch)
    register_dual_region_plugins()
    codes = fake.TensorDesc(N_SHAPE, fake.DataType.INT8)
    params = fake.TensorDesc((7,), fake.DataType.FLOAT)
    out = fake.TensorDesc(N_SHAPE, fake.DataType.FLOAT)
    with pytest.raises(PluginError, match=r"no CUDA GPU to compile the kernels for; register with arch="):
        fake.run_aot_impl(DEQUANT_ID, [codes, params], [out], {"out_dtype": 1})


def test_descriptors_refuse_the_schema_1_params_layout(
    monkeypatch: pytest.MonkeyPatch, kernel_dir: Path
) -> None:
    """An ONNX file exported before the code split carries float32[5] params: refused at build time."""
    trtp = fake.install(monkeypatch)
    register_dual_region_plugins(kernel_dir=kernel_dir, arch=90)
    old = fake.TensorDesc((5,), fake.DataType.FLOAT)
    with pytest.raises(
        PluginError, match=r"drq::DualRegionDequant: params must be float32\[7\] .* got shape \[5\]"
    ):
        trtp.REGISTRY[DEQUANT_ID].register_func(fake.TensorDesc(N_SHAPE, fake.DataType.INT8), old, 1)
    with pytest.raises(PluginError, match=r"drq::DualRegionQuantize: params must be float32\[7\]"):
        trtp.REGISTRY[QUANTIZE_ID].register_func(fake.TensorDesc(N_SHAPE, fake.DataType.FLOAT), old)
