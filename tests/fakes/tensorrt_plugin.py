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


class ShapeExprs(tuple):
    def numel(self) -> ShapeExpr:
        return ShapeExpr(math.prod(e.value for e in self))


class TensorDesc:
    def __init__(self, shape_expr: tuple[int, ...] | ShapeExprs, dtype: DataType,
                 format: TensorFormat = TensorFormat.LINEAR) -> None:
        self.shape_expr = ShapeExprs(ShapeExpr(e) for e in shape_expr)
        self.dtype = dtype
        self.format = format

    def like(self) -> TensorDesc:
        return TensorDesc(self.shape_expr, self.dtype, self.format)


class Tensor:
    """Run-time tensor handed to `impl` (exposes __cuda_array_interface__ in TensorRT)."""


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
        combos = [[s.split("|")[k] if "|" in s else s.split("*")[0] for s in self.io_types]
                  for k in range(width)]
        for j, s in enumerate(self.io_types):
            base = list(combos)
            for alt in s.split("*")[1:]:
                combos += [c[:j] + [alt] + c[j + 1:] for c in base]
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
            if typing.get_origin(ann) is not tuple or not all(_is_class(a) and issubclass(a, tensor_type)
                                                              for a in args):
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
        tail = ("outputs", "stream", "tactic") if "tactic" in inspect.signature(func).parameters else (
            "outputs", "stream")
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
        if (ret is inspect.Parameter.empty or typing.get_origin(ret) is not tuple or len(args) != 4
                or not _str_or_bytes(args[0]) or not _str_or_bytes(args[1])
                or not (_is_class(args[2]) and issubclass(args[2], KernelLaunchParams))
                or not (_is_class(args[3]) and issubclass(args[3], SymExprs))):
            raise ValueError("aot_impl: return annotation must be "
                             "Tuple[str | bytes, str | bytes, KernelLaunchParams, SymExprs]")
        plugin.aot_impl_func = func
        return func

    return decorator


def make_modules(version: str = "10.13.0", with_aot: bool = True
                 ) -> tuple[types.ModuleType, types.ModuleType]:
    """Fresh fake `tensorrt` and `tensorrt.plugin` modules (empty registry)."""
    REGISTRY.clear()
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.DataType = DataType
    trt.float32, trt.float16 = DataType.FLOAT, DataType.HALF
    trt.int8, trt.int32 = DataType.INT8, DataType.INT32
    trt.TensorFormat = TensorFormat
    trtp = types.ModuleType("tensorrt.plugin")
    names = ["register", "autotune", "impl", "TensorDesc", "Tensor", "ShapeExpr", "ShapeExprs",
             "SymExprs", "SymIntExprs", "SymInt32", "KernelLaunchParams", "AutoTuneCombination",
             "from_shape_expr", "cdiv", "REGISTRY"]
    if with_aot:
        names.append("aot_impl")
    module = sys.modules[__name__]
    for name in names:
        setattr(trtp, name, getattr(module, name))
    trt.plugin = trtp
    return trt, trtp


def install(monkeypatch: Any, version: str = "10.13.0", with_aot: bool = True) -> types.ModuleType:
    """Put the fakes into sys.modules for one test; returns the fake `tensorrt.plugin`."""
    trt, trtp = make_modules(version, with_aot)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "tensorrt.plugin", trtp)
    return trtp
