"""Register DualRegionDequant / DualRegionQuantize as TensorRT Python plugins ("quickly deployable").

Targets the `tensorrt.plugin` API of TensorRT 10.9+ (AOT, `@trtp.aot_impl`) and 10.6+ (JIT,
`@trtp.impl`); written against the TensorRT 10.13 / 11.x documentation pages cited inline. Nothing
happens at import: `register_dual_region_plugins()` applies the decorators once (idempotent) and is
called by `drq build` and by runtimes before they deserialise an engine.

Plugin ids are `drq::DualRegionDequant` / `drq::DualRegionQuantize`, version "1" (TensorRT's Python
plugin creator always reports version "1"), matching the ONNX nodes of `plugins.onnx_function`:
the ONNX parser passes the node attributes that the `register` function declares (`out_dtype`).

* AOT (`impl="aot"`): `aot_impl` returns the Triton kernel as PTX (`plugins.aot`), launch parameters
  and the symbolic element count; TensorRT embeds the PTX in the engine, no Python at run time.
* JIT (`impl="jit"`): `impl` launches the same Triton kernel through torch on TensorRT's stream.
* `impl="both"` registers both; TensorRT then needs
  `NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS` (or `PREFER_JIT_...`) on the network, or it
  refuses to create the plugin.

The decorated functions get their annotations as objects (`_annotate`), not strings: TensorRT
validates them with `inspect.signature` + `issubclass`, and this module uses postponed annotations.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal

from drq.versions import module_version
from plugins.errors import MissingDependency, PluginError
from plugins.spec import DEQUANT_OP, NAMESPACE, NUM_PARAMS, QUANTIZE_OP

TARGET_TENSORRT: Final = "10.13.0"
"""The TensorRT release this code targets: 10.13.0 (GA 2025-07-24), whose `tensorrt.plugin` API
(register / autotune / aot_impl / impl, Tensor, TensorDesc, KernelLaunchParams, SymInt32) the
stand-in `tests/fakes/tensorrt_plugin.py` reproduces. The calls used exist from 10.9 (AOT) and 10.6
(JIT) and are unchanged in the 11.x documentation."""
MIN_AOT: Final = (10, 9)
MIN_JIT: Final = (10, 6)
DEQUANT_ID: Final = f"{NAMESPACE}::{DEQUANT_OP}"
QUANTIZE_ID: Final = f"{NAMESPACE}::{QUANTIZE_OP}"
ONNX_FLOAT: Final = 1  # TensorProto.FLOAT, the `out_dtype` attribute values (plugins.onnx_function)
ONNX_FLOAT16: Final = 10

ImplKind = Literal["aot", "jit", "both"]


@dataclass(frozen=True)
class Registration:
    """What `register_dual_region_plugins` registered with TensorRT."""

    plugin_ids: tuple[str, ...]
    impl: ImplKind
    kernel_dir: str | None  # precompiled PTX (`drq kernels --out`), or None: compile during the build
    arch: int | None  # compute capability of the PTX, or None: the building GPU's
    tensorrt_version: str


_REGISTERED: dict[str, Registration] = {}


def import_tensorrt_plugin() -> tuple[ModuleType, ModuleType]:
    """Import `tensorrt` and `tensorrt.plugin` on first use.

    Raises:
        MissingDependency: TensorRT (>= 10.6, with the Python plugin API) is not installed.
    """
    try:
        trt = importlib.import_module("tensorrt")
        trtp = importlib.import_module("tensorrt.plugin")
    except ImportError as err:
        raise MissingDependency(
            "the dual-region TensorRT plugins need tensorrt >= 10.6 with tensorrt.plugin "
            "(pip install 'drq[tensorrt]')"
        ) from err
    return trt, trtp


def _annotate(fn: Callable[..., Any], **annotations: Any) -> Callable[..., Any]:
    fn.__annotations__ = dict(annotations)
    return fn


def _decorate_pair(
    decorator: Callable[[str], Callable[[Callable[..., Any]], Any]],
    dequant: Callable[..., Any],
    quantize: Callable[..., Any],
    tensor: Any,
    tail: dict[str, Any],
    out_dtype: bool = False,
) -> None:
    """Annotate and register one hook of both plugins: tensorrt.plugin reads the parameter types.

    Dequant's inputs are (codes, params[, out_dtype]), quantize's (x, params); `tail` is what follows
    them in the documented signature (outputs, tactic or stream, and "return").
    """
    extra = {"out_dtype": int} if out_dtype else {}
    decorator(DEQUANT_ID)(_annotate(dequant, codes=tensor, params=tensor, **extra, **tail))
    decorator(QUANTIZE_ID)(_annotate(quantize, x=tensor, params=tensor, **tail))


def _float_dtype(trt: ModuleType, dtype: Any, what: str) -> Literal["fp32", "fp16"]:
    if dtype == trt.float32:
        return "fp32"
    if dtype == trt.float16:
        return "fp16"
    raise PluginError(f"{what}: dtype must be float32 or float16, got {dtype}")


def _current_arch() -> int:
    """Compute capability of the GPU the engine is being built on (Triton's active CUDA target).

    Raises:
        MissingDependency: triton is missing.
        PluginError: no CUDA GPU is visible (then pass `arch` or `kernel_dir` to the registration).
    """
    try:
        from triton.runtime import driver
    except ImportError as err:
        raise MissingDependency(
            "compiling the dual-region kernels needs triton (pip install 'drq[triton]')"
        ) from err
    try:
        return int(driver.active.get_current_target().arch)
    except RuntimeError as err:  # Triton: "0 active drivers" without a GPU
        raise PluginError(
            "dual-region plugins: no CUDA GPU to compile the kernels for; register with "
            "arch=<compute capability> or kernel_dir=<drq kernels --out folder>"
        ) from err


def register_dual_region_plugins(
    impl: ImplKind | None = None, kernel_dir: str | Path | None = None, arch: int | None = None
) -> Registration:
    """Register both plugins with TensorRT once; later calls with the same arguments return the first result.

    Args:
        impl: "aot" (default when TensorRT >= 10.9), "jit" (default before), or "both".
        kernel_dir: folder written by `drq kernels --out` to take PTX from; None compiles the Triton
            kernels during the engine build.
        arch: compute capability of the PTX to embed; None asks Triton for the building GPU's.

    Raises:
        MissingDependency: tensorrt (or, when a kernel is needed, triton / torch) is missing.
        PluginError: the TensorRT version lacks the requested implementation kind, or the plugins were
            already registered with different arguments.
    """
    trt, trtp = import_tensorrt_plugin()
    version = module_version(trt)
    has_aot = hasattr(trtp, "aot_impl")
    chosen: ImplKind = impl or ("aot" if has_aot else "jit")
    if chosen in ("aot", "both") and not has_aot:
        raise PluginError(
            f"impl={chosen!r}: AOT Python plugins need TensorRT >= {MIN_AOT[0]}.{MIN_AOT[1]}; "
            f"found {trt.__version__}"
        )
    if version < MIN_JIT or not hasattr(trtp, "register"):
        raise PluginError(
            f"dual-region plugins need TensorRT >= {MIN_JIT[0]}.{MIN_JIT[1]}; found {trt.__version__}"
        )
    folder = None if kernel_dir is None else str(kernel_dir)
    wanted = Registration((DEQUANT_ID, QUANTIZE_ID), chosen, folder, arch, str(trt.__version__))
    done = _REGISTERED.get("drq")
    if done is not None:
        if done != wanted:
            raise PluginError(
                f"dual-region plugins already registered as {done}; cannot re-register as {wanted}"
            )
        return done
    _define(trt, trtp, wanted)
    _REGISTERED["drq"] = wanted
    return wanted


def _define(trt: ModuleType, trtp: ModuleType, reg: Registration) -> None:
    """Apply the `tensorrt.plugin` decorators of both plugins: descriptors, type combinations, then the
    AOT and/or JIT implementation `reg.impl` asks for."""
    _define_descriptors(trt, trtp)
    _define_autotune(trtp)
    if reg.impl in ("aot", "both"):
        _define_aot(trt, trtp, _KernelCache(reg))
    if reg.impl in ("jit", "both"):
        _define_jit(trtp)


class _KernelCache:
    """Compiled (or `drq kernels`-loaded) PTX per (op, dtype, compute capability), made on first use."""

    def __init__(self, reg: Registration) -> None:
        self.reg = reg
        self.kernels: dict[tuple[str, str, int], Any] = {}

    def get(self, op: str, dtype: Literal["fp32", "fp16"]) -> Any:
        from plugins.aot import KernelSpec, compile_kernel, load_kernel

        cc = self.reg.arch if self.reg.arch is not None else _current_arch()
        key = (op, dtype, cc)
        if key not in self.kernels:
            spec = KernelSpec(op, dtype)
            if self.reg.kernel_dir:
                self.kernels[key] = load_kernel(self.reg.kernel_dir, spec, cc)
            else:
                self.kernels[key] = compile_kernel(spec, cc)
        return self.kernels[key]


def _launch(trtp: ModuleType, kernel: Any, n: Any) -> tuple[str, str, Any, Any]:
    """What an `aot_impl` returns: kernel name, PTX, launch parameters and the extra scalar arguments.

    One program per BLOCK elements, num_warps * 32 threads; the only extra scalar is n_elements, passed
    between the input and output pointers (kernel signature, plugins.aot).
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/trt_plugin_aot_impl/index.html
    """
    params = trtp.KernelLaunchParams()
    params.grid_x = trtp.cdiv(n, kernel.block)
    params.block_x = kernel.block_x
    params.shared_mem = kernel.shared_mem
    extra = trtp.SymIntExprs(1)
    extra[0] = trtp.SymInt32(n)
    return kernel.name, kernel.ptx, params, extra


def _define_descriptors(trt: ModuleType, trtp: ModuleType) -> None:
    """`@trtp.register`: output shape and dtype of each op.
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/trt_plugin_register/index.html
    """

    def dequant_desc(codes, params, out_dtype):
        _check_params_desc(DEQUANT_ID, params)
        if out_dtype not in (ONNX_FLOAT, ONNX_FLOAT16):
            raise PluginError(
                f"{DEQUANT_ID}: out_dtype must be {ONNX_FLOAT} (float32) or {ONNX_FLOAT16} "
                f"(float16), got {out_dtype}"
            )
        # TensorDesc / from_shape_expr:
        # https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/Tensor/TensorDesc.html
        out = trt.float16 if out_dtype == ONNX_FLOAT16 else trt.float32
        return trtp.from_shape_expr(codes.shape_expr, dtype=out)

    def quantize_desc(x, params):
        _check_params_desc(QUANTIZE_ID, params)
        return trtp.from_shape_expr(x.shape_expr, dtype=trt.int8)

    desc = trtp.TensorDesc
    _decorate_pair(trtp.register, dequant_desc, quantize_desc, desc, {"return": desc}, out_dtype=True)


def _define_autotune(trtp: ModuleType) -> None:
    """`@trtp.autotune`: the type/format combinations; I/O order is inputs (data, params) then the
    output, LINEAR only (flattened contiguous NCHW).
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/trt_plugin_autotune/index.html
    """

    def dequant_autotune(codes, params, out_dtype, outputs):
        out = "FP16" if out_dtype == ONNX_FLOAT16 else "FP32"
        return [trtp.AutoTuneCombination(f"INT8, FP32, {out}", "LINEAR")]

    def quantize_autotune(x, params, outputs):
        # x may be float32 or float16 (the two kernel specialisations); in a strongly typed network the
        # type is the network's, so no cast is ever inserted in front of the quantizer.
        return [trtp.AutoTuneCombination("FP32|FP16, FP32, INT8", "LINEAR")]

    tail = {"outputs": tuple[trtp.TensorDesc], "return": list[trtp.AutoTuneCombination]}
    _decorate_pair(trtp.autotune, dequant_autotune, quantize_autotune, trtp.TensorDesc, tail, out_dtype=True)


def _define_aot(trt: ModuleType, trtp: ModuleType, kernels: _KernelCache) -> None:
    """`@trtp.aot_impl`: the PTX TensorRT embeds in the engine (no Python at run time)."""
    aot_return = tuple[str | bytes, str | bytes, trtp.KernelLaunchParams, trtp.SymIntExprs]

    def dequant_aot(codes, params, outputs, tactic):
        dtype = _float_dtype(trt, outputs[0].dtype, DEQUANT_ID)
        return _launch(trtp, kernels.get(DEQUANT_OP, dtype), codes.shape_expr.numel())

    def quantize_aot(x, params, outputs, tactic):
        dtype = _float_dtype(trt, x.dtype, QUANTIZE_ID)
        return _launch(trtp, kernels.get(QUANTIZE_OP, dtype), x.shape_expr.numel())

    tail = {"outputs": tuple[trtp.TensorDesc], "tactic": int, "return": aot_return}
    _decorate_pair(trtp.aot_impl, dequant_aot, quantize_aot, trtp.TensorDesc, tail)


def _define_jit(trtp: ModuleType) -> None:
    """`@trtp.impl`: launch the Triton kernel through torch on TensorRT's stream at run time.
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/trt_plugin_impl/index.html
    """

    def dequant_jit(codes, params, outputs, stream):
        _launch_jit("dequantize_triton", codes, params, outputs[0], stream)

    def quantize_jit(x, params, outputs, stream):
        _launch_jit("quantize_triton", x, params, outputs[0], stream)

    tail = {"outputs": tuple[trtp.Tensor], "stream": int, "return": None}
    _decorate_pair(trtp.impl, dequant_jit, quantize_jit, trtp.Tensor, tail)


def _check_params_desc(plugin_id: str, params: Any) -> None:
    """Refuse, at build time, a params input that is not float32[7] (e.g. an ONNX file exported with
    the 5-entry layout of schema-1 drq): the kernels read entries 0..6 and would read past its end.

    ShapeExpr (https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/Shape/ShapeExpr.html):
    `is_constant` / `constant_value()` are defined for non-fake expressions, which the descriptor's
    shape calculation gets.
    """
    shape = list(params.shape_expr)
    known = [not e.is_fake and e.is_constant for e in shape]
    if len(shape) != 1 or (known[0] and shape[0].constant_value() != NUM_PARAMS):
        dims = [e.constant_value() if k else "?" for e, k in zip(shape, known, strict=True)]
        raise PluginError(
            f"{plugin_id}: params must be float32[{NUM_PARAMS}] [bp, s_d, s_p, s_n, D, P, N], got shape "
            f"{dims}; re-export the model with this drq (the 5-entry layout predates the code split)"
        )


def _launch_jit(wrapper: str, inp: Any, params: Any, out: Any, stream: int) -> None:
    """Run a `plugins.kernels` launch wrapper on TensorRT's CUDA stream (torch views of the buffers).

    Raises:
        MissingDependency: torch or triton is missing.
        PluginError: a buffer is neither CUDA memory nor a DLPack host buffer, or fails the wrapper's
            dtype/shape checks.
    """
    try:
        import torch

        from plugins import kernels
    except ImportError as err:
        raise MissingDependency(
            "the JIT dual-region plugins need torch and triton (pip install torch 'drq[triton]')"
        ) from err
    views = [_torch_view(torch, t) for t in (inp, params, out)]
    launch = getattr(kernels, wrapper)
    if views[0].is_cuda:
        # TensorRT enqueues every layer on `stream`; launching there keeps the kernel ordered with them
        with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
            launch(*views)
    else:
        # host buffers: Triton's interpreter (TRITON_INTERPRET=1) runs the kernel synchronously, no stream
        launch(*views)


def _torch_view(torch: Any, tensor: Any) -> Any:
    """A zero-copy torch view of one plugin buffer.

    TensorRT's `trtp.Tensor` exposes `__cuda_array_interface__` (device memory); a host buffer exposing
    DLPack is accepted too, so the same `impl` runs on the CPU under Triton's interpreter.
    """
    if hasattr(tensor, "__cuda_array_interface__"):
        return torch.as_tensor(tensor, device="cuda")
    if hasattr(tensor, "__dlpack__"):
        return torch.from_dlpack(tensor)
    raise PluginError(
        f"JIT plugin: cannot view a {type(tensor).__name__} as a tensor "
        "(neither __cuda_array_interface__ nor __dlpack__)"
    )
