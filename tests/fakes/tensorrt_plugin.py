"""Stand-in for `tensorrt` + `tensorrt.plugin` (TensorRT's Python plugin API) that enforces the documented
signatures and records every registration.

Follows the `tensorrt.plugin` documentation (TensorRT 10.9+):
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/
* `register(plugin_id, lazy_register=False)`: "{namespace}::{name}", no '.' and no reserved namespace; the
  function's parameters are TensorDescs first, then attributes of a serialisable type (int, float, str,
  bool, bytes), no defaults, annotations mandatory and real classes (TensorRT calls `issubclass` on
  them, so string annotations fail), return TensorDesc or Tuple[TensorDesc, ...].
* `autotune` / `impl` / `aot_impl`: parameter names exactly `(tensors..., attrs subset in registration
  order..., outputs[, stream][, tactic])`, attribute annotations equal to the registered ones,
  `aot_impl` return annotated Tuple[str|bytes, str|bytes, KernelLaunchParams, SymExprs].
Shape expressions are concrete integers here, so tests can evaluate launch parameters.

Install with `install(monkeypatch)`; it returns the fake `tensorrt.plugin` module whose `REGISTRY`
maps plugin ids to `PluginDef` records.
"""

from __future__ import annotations

import enum
import inspect
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from typing import Any

SERIALIZABLE = (int, float, bytes, bool, str)
RESERVED_NAMESPACES = {"", "trt", "tensorrt", "std"}


class DataType(enum.Enum):
    FLOAT = "FP32"
    HALF = "FP16"
    INT8 = "INT8"
    INT32 = "INT32"
    BF16 = "BF16"


class TensorFormat(enum.Enum):
    LINEAR = 0
    CHW32 = 1
    HWC = 2


class ShapeExpr:
    """A symbolic dimension; concrete here."""

    def __init__(self, value: int | ShapeExpr) -> None:
        self.value = value.value if isinstance(value, ShapeExpr) else int(value)

    def __mul__(self, other: int | ShapeExpr) -> ShapeExpr:
        return ShapeExpr(self.value * ShapeExpr(other).value)

    __rmul__ = __mul__

    # https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/Shape/ShapeExpr.html:
    # `is_fake` outside shape calculations, `is_constant` for build-time constants, `constant_value()`.
    # The descriptors run in a shape calculation and every dimension here is a concrete constant.
    is_fake = False
    is_constant = True

    def constant_value(self) -> int:
        return self.value


class ShapeExprs(tuple):
    def numel(self) -> ShapeExpr:
        return ShapeExpr(math.prod(e.value for e in self))


class TensorDesc:
    def __init__(
        self,
        shape_expr: tuple[int, ...] | ShapeExprs,
        dtype: DataType,
        format: TensorFormat = TensorFormat.LINEAR,
    ) -> None:
        self.shape_expr = ShapeExprs(ShapeExpr(e) for e in shape_expr)
        self.dtype = dtype
        self.format = format

    def like(self) -> TensorDesc:
        return TensorDesc(self.shape_expr, self.dtype, self.format)


_NP_TO_DTYPE = {
    "float32": DataType.FLOAT,
    "float16": DataType.HALF,
    "int8": DataType.INT8,
    "int32": DataType.INT32,
}


class Tensor:
    """Run-time tensor handed to `impl` (Tensor page of the `tensorrt.plugin` docs).

    TensorRT's wraps device memory and exposes `__cuda_array_interface__`; this one wraps a host NumPy
    array and exposes DLPack instead, so an `impl` can run on the CPU (Triton interpreter) and write
    into the array in place. Same read-only properties: dtype, format, shape, ndim, data_ptr, numel().
    """

    def __init__(self, array: Any = None, format: TensorFormat = TensorFormat.LINEAR) -> None:
        self._array = array
        self._format = format

    @property
    def dtype(self) -> DataType:
        return _NP_TO_DTYPE[str(self._array.dtype)]

    @property
    def format(self) -> TensorFormat:
        return self._format

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._array.shape)

    @property
    def ndim(self) -> int:
        return self._array.ndim

    @property
    def data_ptr(self) -> int:
        return int(self._array.ctypes.data)

    def numel(self) -> int:
        return int(self._array.size)

    def __dlpack__(self, **kwargs: Any) -> Any:
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self) -> Any:
        return self._array.__dlpack_device__()


class SymExprs:
    def __init__(self, length: int) -> None:
        self._exprs: list[Any] = [None] * length

    def __setitem__(self, index: int, value: Any) -> None:
        if index >= len(self._exprs):
            raise IndexError("Index out of range")
        self._exprs[index] = value

    def __getitem__(self, index: int) -> Any:
        return self._exprs[index]

    def __len__(self) -> int:
        return len(self._exprs)


class SymIntExprs(SymExprs):
    def __setitem__(self, index: int, value: Any) -> None:
        if not isinstance(value, (SymInt32, int)):
            raise ValueError(f"Value should be int or SymIntExpr. Got '{type(value)}'")
        super().__setitem__(index, value)


class SymInt32:
    def __init__(self, value: int | ShapeExpr) -> None:
        self.value = ShapeExpr(value).value


@dataclass
class KernelLaunchParams:
    grid_x: Any = 1
    grid_y: Any = 1
    grid_z: Any = 1
    block_x: Any = 1
    block_y: Any = 1
    block_z: Any = 1
    shared_mem: Any = 0

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.__dataclass_fields__:
            raise AttributeError(f"KernelLaunchParams has no attribute {name!r}")
        if not isinstance(value, (int, ShapeExpr, SymInt32)):
            raise TypeError(f"KernelLaunchParams.{name}: int, ShapeExpr or SymInt32, got {type(value)}")
        object.__setattr__(self, name, value)


class AutoTuneCombination:
    def __init__(self, io_types: str | None = None, layouts: str | None = None, tactics: Any = None) -> None:
        self.io_types = [s.strip() for s in (io_types or "").split(",") if s.strip()]
        self.layouts = [s.strip() for s in (layouts or "LINEAR").split(",")]
        if len(self.layouts) == 1:
            self.layouts = self.layouts * len(self.io_types)
        if len(self.layouts) != len(self.io_types):
            raise ValueError("layouts must name one format per I/O or a single one for all")
        for position in self.io_types:
            for name in position.replace("*", "|").split("|"):
                if name not in {d.value for d in DataType}:
                    raise ValueError(f"unknown type {name!r} in {io_types!r}")
        for position in self.layouts:
            for name in position.replace("*", "|").split("|"):
                if name not in TensorFormat.__members__:
                    raise ValueError(f"unknown format {name!r} in {layouts!r}")
        # the docs say one separator per string but their own example mixes them; TensorRT's
        # _gen_onesided_combinations rejects both only within one position, as here
        if any("|" in s and "*" in s for s in self.io_types):
            raise ValueError(f"Type/Format {io_types!r} contains both '|' and '*' in one position")
        dependent = {len(s.split("|")) for s in self.io_types if "|" in s}
        if len(dependent) > 1:
            raise ValueError(f"{io_types!r}: dependent ('|') positions must list the same number of types")
        self.tactics = tactics

    def type_combinations(self) -> list[list[str]]:
        """Every I/O type list this combination allows ('|' positions vary together, '*' ones freely)."""
        width = max([len(s.split("|")) for s in self.io_types] + [1])
        combos = [
            [s.split("|")[k] if "|" in s else s.split("*")[0] for s in self.io_types] for k in range(width)
        ]
        for j, s in enumerate(self.io_types):
            base = list(combos)
            for alt in s.split("*")[1:]:
                combos += [c[:j] + [alt] + c[j + 1 :] for c in base]
        return combos


def from_shape_expr(shape_expr: ShapeExprs, dtype: DataType) -> TensorDesc:
    if not isinstance(shape_expr, ShapeExprs):
        raise TypeError("from_shape_expr: shape_expr must be ShapeExprs")
    return TensorDesc(shape_expr, dtype)


def cdiv(first: int | ShapeExpr, second: int | ShapeExpr) -> ShapeExpr:
    if isinstance(first, int) and isinstance(second, int):
        raise ValueError("cdiv: both arguments are ints")
    a, b = ShapeExpr(first).value, ShapeExpr(second).value
    if b == 0:
        raise ValueError("cdiv: division by 0")
    return ShapeExpr(-(-a // b))


@dataclass
class PluginDef:
    plugin_id: str
    register_func: Any
    tensor_names: list[str]
    attrs: dict[str, type]
    autotune_func: Any = None
    impl_func: Any = None
    aot_impl_func: Any = None
    calls: list[str] = field(default_factory=list)


REGISTRY: dict[str, PluginDef] = {}
_TRT: dict[str, types.ModuleType] = {}  # the `tensorrt` module the plugins are registered with


@dataclass(frozen=True)
class Creator:
    """What `register` puts into TensorRT's plugin registry (an IPluginCreatorV3One's identity)."""

    name: str
    plugin_version: str
    plugin_namespace: str
    field_names: tuple[str, ...]  # the attributes, passed to create_plugin from the ONNX node


def _is_class(annotation: Any) -> bool:
    return inspect.isclass(annotation)


def register(plugin_id: str, lazy_register: bool = False) -> Any:
    namespace, _, name = plugin_id.partition("::")
    if not name or "." in namespace or "." in name:
        raise ValueError(f"plugin id {plugin_id!r} must be '{{namespace}}::{{name}}' without '.'")
    if namespace in RESERVED_NAMESPACES:
        raise ValueError(f"Provided namespace {namespace} is a reserved namespace")

    def decorator(func: Any) -> Any:
        if plugin_id in REGISTRY:
            raise ValueError(f"already has a definition for '{name}'")
        sig = inspect.signature(func)
        tensors, attrs, seen_attr = [], {}, False
        for index, (pname, param) in enumerate(sig.parameters.items()):
            ann = param.annotation
            if ann is inspect.Parameter.empty:
                raise ValueError(f"Argument {pname} does not have a type annotation")
            if not _is_class(ann):
                raise TypeError(f"Argument {pname}: annotation {ann!r} is not a class (issubclass fails)")
            if param.default is not inspect.Parameter.empty:
                raise ValueError(f"Argument {pname} has a default value")
            if issubclass(ann, TensorDesc):
                if seen_attr:
                    raise ValueError("TensorDescs args and attribute args cannot be interspersed")
                tensors.append(pname)
            else:
                if index == 0:
                    raise ValueError("TensorDescs args should come first")
                if pname in ("outputs", "stream", "tactic"):
                    raise ValueError(f"'{pname}' is not allowed as a plugin attribute name.")
                if ann not in SERIALIZABLE:
                    raise ValueError(f"Attribute '{pname}' of type {ann} is not serializable")
                attrs[pname] = ann
                seen_attr = True
        ret = sig.return_annotation
        if typing.get_origin(ret) is tuple:
            if not all(_is_class(a) and issubclass(a, TensorDesc) for a in typing.get_args(ret)):
                raise ValueError("Return types can only be TensorDesc or Tuple[TensorDesc]")
        elif not (_is_class(ret) and issubclass(ret, TensorDesc)):
            raise ValueError(f"Return argument is of type {ret!r}. Return types can only be TensorDesc")
        REGISTRY[plugin_id] = PluginDef(plugin_id, func, tensors, attrs)
        if not lazy_register:
            # "By default, the plugin will be immediately registered in the TRT plugin registry": a
            # creator (name, version "1", namespace) the ONNX parser's plugin lookup can find
            registry = getattr(_TRT.get("module"), "get_plugin_registry", None)
            if registry is not None:
                registry().register_creator(Creator(name, "1", namespace, tuple(attrs)), namespace)
        return func

    return decorator


def _validate(func: Any, plugin: PluginDef, tail: tuple[str, ...], tensor_type: type, kind: str) -> None:
    sig = inspect.signature(func)
    used_attrs = []
    for pname, param in sig.parameters.items():
        ann = param.annotation
        if pname in plugin.attrs:
            used_attrs.append(pname)
        if ann is inspect.Parameter.empty:
            continue
        if pname == "outputs":
            args = typing.get_args(ann)
            if typing.get_origin(ann) is not tuple or not all(
                _is_class(a) and issubclass(a, tensor_type) for a in args
            ):
                raise ValueError(f"{kind}: 'outputs' should be a Tuple[{tensor_type.__name__}], got {ann!r}")
        elif pname in ("stream", "tactic"):
            if not (_is_class(ann) and issubclass(ann, int)):
                raise ValueError(f"{kind}: '{pname}' input argument should be an int")
        elif not _is_class(ann):
            raise TypeError(f"{kind}: annotation of {pname} is {ann!r}, not a class")
        elif issubclass(ann, tensor_type):
            if pname not in plugin.tensor_names:
                raise ValueError(f"{kind}: unexpected tensor '{pname}'")
        elif pname not in plugin.attrs:
            raise ValueError(f"{kind}: unexpected attribute '{pname}'")
        elif ann != plugin.attrs[pname]:
            raise ValueError(f"{kind}: attribute '{pname}' annotation differs from the registration")
    expected = plugin.tensor_names + [a for a in plugin.attrs if a in used_attrs] + list(tail)
    if list(sig.parameters) != expected:
        raise ValueError(f"{kind}: signature {list(sig.parameters)} does not match {expected}")


def _plugin(plugin_id: str) -> PluginDef:
    if plugin_id not in REGISTRY:
        raise ValueError(f"Plugin {plugin_id} is not registered")
    return REGISTRY[plugin_id]


def autotune(plugin_id: str) -> Any:
    def decorator(func: Any) -> Any:
        plugin = _plugin(plugin_id)
        _validate(func, plugin, ("outputs",), TensorDesc, "autotune")
        ret = inspect.signature(func).return_annotation
        if ret is not inspect.Parameter.empty:
            args = typing.get_args(ret) if typing.get_origin(ret) is list else (ret,)
            if not all(_is_class(a) and issubclass(a, AutoTuneCombination) for a in args):
                raise ValueError("autotune: return AutoTuneCombination or List[AutoTuneCombination]")
        plugin.autotune_func = func
        return func

    return decorator


def impl(plugin_id: str) -> Any:
    def decorator(func: Any) -> Any:
        plugin = _plugin(plugin_id)
        tail = (
            ("outputs", "stream", "tactic")
            if "tactic" in inspect.signature(func).parameters
            else ("outputs", "stream")
        )
        _validate(func, plugin, tail, Tensor, "impl")
        ret = inspect.signature(func).return_annotation
        if ret is not inspect.Parameter.empty and ret is not None:
            raise ValueError("impl: Return annotation should be None.")
        plugin.impl_func = func
        return func

    return decorator


def _str_or_bytes(annotation: Any) -> bool:
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    options = typing.get_args(annotation) if is_union else (annotation,)
    return all(a in (str, bytes) for a in options)


def aot_impl(plugin_id: str) -> Any:
    def decorator(func: Any) -> Any:
        plugin = _plugin(plugin_id)
        _validate(func, plugin, ("outputs", "tactic"), TensorDesc, "aot_impl")
        ret = inspect.signature(func).return_annotation
        args = typing.get_args(ret)
        if (
            ret is inspect.Parameter.empty
            or typing.get_origin(ret) is not tuple
            or len(args) != 4
            or not _str_or_bytes(args[0])
            or not _str_or_bytes(args[1])
            or not (_is_class(args[2]) and issubclass(args[2], KernelLaunchParams))
            or not (_is_class(args[3]) and issubclass(args[3], SymExprs))
        ):
            raise ValueError(
                "aot_impl: return annotation must be "
                "Tuple[str | bytes, str | bytes, KernelLaunchParams, SymExprs]"
            )
        plugin.aot_impl_func = func
        return func

    return decorator


def _call_args(
    plugin: PluginDef,
    func: Any,
    inputs: list[Any],
    outputs: list[Any],
    attrs: dict[str, Any],
    tail: dict[str, Any],
) -> list[Any]:
    """Positional arguments in the documented order: inputs, the attributes `func` declares (in
    registration order), outputs as a tuple, then the optional trailing arguments it declares."""
    if len(inputs) != len(plugin.tensor_names):
        raise ValueError(f"{plugin.plugin_id}: {len(inputs)} inputs, registered {plugin.tensor_names}")
    if set(attrs) != set(plugin.attrs):
        raise ValueError(f"{plugin.plugin_id}: attributes {sorted(attrs)}, registered {sorted(plugin.attrs)}")
    for name, value in attrs.items():
        if not isinstance(value, plugin.attrs[name]):
            raise TypeError(f"{plugin.plugin_id}: attribute {name}={value!r} is not {plugin.attrs[name]}")
    params = inspect.signature(func).parameters
    args = list(inputs) + [attrs[a] for a in plugin.attrs if a in params] + [tuple(outputs)]
    return args + [value for name, value in tail.items() if name in params]


def run_impl(
    plugin_id: str,
    inputs: list[Tensor],
    outputs: list[Tensor],
    attrs: dict[str, Any],
    stream: int = 0,
    tactic: int = 0,
) -> None:
    """Enqueue a JIT plugin the way TensorRT does: `impl(inputs..., attrs..., outputs, stream[, tactic])`.

    The outputs are written in place; `impl` must return None.
    """
    plugin = _plugin(plugin_id)
    if plugin.impl_func is None:
        raise ValueError(f"{plugin_id}: no trt.plugin.impl registered")
    args = _call_args(
        plugin,
        plugin.impl_func,
        list(inputs),
        list(outputs),
        attrs,
        {"stream": int(stream), "tactic": int(tactic)},
    )
    plugin.calls.append("impl")
    if plugin.impl_func(*args) is not None:
        raise ValueError(f"{plugin_id}: impl must return None")


_PTX_ENTRY = re.compile(r"\.visible\s+\.entry\s+(\w+)\s*\((.*?)\)", re.S)


def ptx_entry(ptx: str) -> tuple[str, list[str]]:
    """(name, parameter types) of the one `.visible .entry` of a PTX module, e.g. ("k", ["u64", "u32"])."""
    entries = _PTX_ENTRY.findall(ptx)
    if len(entries) != 1:
        raise ValueError(f"PTX: {len(entries)} .visible .entry declarations, expected 1")
    name, decls = entries[0]
    types_ = [re.search(r"\.([usbf]\d+)\b", d).group(1) for d in decls.split(",") if d.strip()]
    return name, types_


def run_aot_impl(
    plugin_id: str,
    inputs: list[TensorDesc],
    outputs: list[TensorDesc],
    attrs: dict[str, Any],
    tactic: int = 0,
) -> tuple[Any, ...]:
    """Call `aot_impl` as TensorRT does at build time and check what its launcher will pass.

    TensorRT launches the returned kernel with one 64-bit pointer per input, then the extra scalar
    arguments (SymInt32: 32-bit), then one pointer per output (aot_impl docs). So the PTX must have
    exactly one `.entry`, named like the returned kernel name, whose parameters are
    `u64 x inputs, u32 x len(extra), u64 x outputs`. Returns aot_impl's 4-tuple.
    """
    plugin = _plugin(plugin_id)
    if plugin.aot_impl_func is None:
        raise ValueError(f"{plugin_id}: no trt.plugin.aot_impl registered")
    args = _call_args(
        plugin, plugin.aot_impl_func, list(inputs), list(outputs), attrs, {"tactic": int(tactic)}
    )
    plugin.calls.append("aot_impl")
    result = plugin.aot_impl_func(*args)
    if not (isinstance(result, tuple) and len(result) == 4):
        raise ValueError(f"{plugin_id}: aot_impl must return (name, ptx, KernelLaunchParams, SymExprs)")
    name, ptx, launch, extra = result
    if not isinstance(launch, KernelLaunchParams) or not isinstance(extra, SymExprs):
        raise TypeError(f"{plugin_id}: aot_impl returned {type(launch).__name__}, {type(extra).__name__}")
    if any(extra[i] is None for i in range(len(extra))):
        raise ValueError(f"{plugin_id}: aot_impl left an extra argument unset")
    text = ptx.decode() if isinstance(ptx, bytes) else ptx
    entry, param_types = ptx_entry(text)
    kernel = name.decode() if isinstance(name, bytes) else name
    if entry != kernel:
        raise ValueError(f"{plugin_id}: kernel name {kernel!r} is not the PTX entry {entry!r}")
    expected = ["u64"] * len(inputs) + ["u32"] * len(extra) + ["u64"] * len(outputs)
    if param_types != expected:
        raise ValueError(f"{plugin_id}: PTX entry parameters {param_types}, TensorRT passes {expected}")
    return result


def make_modules(
    version: str = "10.13.0", with_aot: bool = True, trt: types.ModuleType | None = None
) -> tuple[types.ModuleType, types.ModuleType]:
    """Fresh fake `tensorrt.plugin` (empty registry) and a minimal fake `tensorrt`, or `trt` extended.

    Pass `trt` (a `tests.fakes.tensorrt` module) to register the plugins with that module's plugin
    registry, where its ONNX parser looks them up.
    """
    REGISTRY.clear()
    own = trt is None
    if trt is None:
        trt = types.ModuleType("tensorrt")
        trt.__version__ = version
        trt.DataType = DataType
        trt.float32, trt.float16 = DataType.FLOAT, DataType.HALF
        trt.int8, trt.int32 = DataType.INT8, DataType.INT32
        trt.TensorFormat = TensorFormat
    _TRT["module"] = trt
    trtp = types.ModuleType("tensorrt.plugin")
    names = [
        "register",
        "autotune",
        "impl",
        "TensorDesc",
        "Tensor",
        "ShapeExpr",
        "ShapeExprs",
        "SymExprs",
        "SymIntExprs",
        "SymInt32",
        "KernelLaunchParams",
        "AutoTuneCombination",
        "from_shape_expr",
        "cdiv",
        "REGISTRY",
    ]
    if with_aot:
        names.append("aot_impl")
    module = sys.modules[__name__]
    for name in names:
        setattr(trtp, name, getattr(module, name))
    if own:
        trt.plugin = trtp
    return trt, trtp


def install(
    monkeypatch: Any, version: str = "10.13.0", with_aot: bool = True, trt: types.ModuleType | None = None
) -> types.ModuleType:
    """Put the fakes into sys.modules for one test; returns the fake `tensorrt.plugin`.

    With `trt` (an installed `tests.fakes.tensorrt` module) only `tensorrt.plugin` is added, on top of it.
    """
    trt, trtp = make_modules(version, with_aot, trt)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    monkeypatch.setattr(trt, "plugin", trtp, raising=False)
    return trtp
