"""DualRegionQuantize / DualRegionDequant as ONNX nodes backed by ONNX local functions.

One node per op, domain `drq`, with two readers in mind:

* onnxruntime (and any ONNX runtime) inlines the local function bodies: standard ops only, float32
  arithmetic exactly as docs/dual_region_codes.md (Div is IEEE division, Round is half to even, every
  Mul/Add is a separate node so nothing fuses into an FMA). `tests/plugins/test_onnx_function.py`
  checks bit equality with `plugins.reference`.
* TensorRT's ONNX parser maps the node to the plugin `drq::<op_type>` version "1" (the node attributes
  `plugin_namespace` / `plugin_version`, read by onnx-tensorrt's FallbackPluginImporter, which then
  also tries the node's domain as namespace). Whether the parser picks the plugin or inlines the local
  function depends on the TensorRT version (docs/dual_region_codes.md, "TensorRT"); `strip_functions`
  removes the bodies so every version has to use the plugin.

The dequant output dtype is the node attribute `out_dtype` (TensorProto.FLOAT = 1 or FLOAT16 = 10,
default FLOAT); the function body casts with `to` referring to it.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
import onnx
from onnx import FunctionProto, ModelProto, NodeProto, TensorProto, helper, numpy_helper

from plugins.errors import PluginError
from plugins.spec import (
    BP,
    DEQUANT_OP,
    NAMESPACE,
    QUANTIZE_OP,
    S_D,
    S_N,
    S_P,
    VERSION,
    D,
    N,
    P,
    validate_params,
)

DOMAIN: Final = NAMESPACE
"""Domain of the nodes and of their local functions."""
FUNCTION_VERSION: Final = 1
"""Opset version of the `drq` domain the model must import."""
MIN_OPSET: Final = 17
"""Lowest default-domain opset the function bodies are written for."""
OUT_DTYPES: Final = (TensorProto.FLOAT, TensorProto.FLOAT16)
PLUGIN_ATTRIBUTES: Final = ("plugin_namespace", "plugin_version")


def _plugin_attrs() -> dict[str, str]:
    return {"plugin_namespace": NAMESPACE, "plugin_version": VERSION}


def make_quantize_node(x: str, params: str, codes: str, name: str | None = None) -> NodeProto:
    """A DualRegionQuantize node: float32/float16 `x` and float32[7] `params` -> int8 `codes`."""
    return helper.make_node(
        QUANTIZE_OP, [x, params], [codes], name=name or codes + "_quantize", domain=DOMAIN, **_plugin_attrs()
    )


def make_dequant_node(
    codes: str, params: str, out: str, out_dtype: int = TensorProto.FLOAT, name: str | None = None
) -> NodeProto:
    """A DualRegionDequant node: int8 `codes` and float32[7] `params` -> `out` of `out_dtype`.

    Raises:
        PluginError: `out_dtype` is not TensorProto.FLOAT or TensorProto.FLOAT16.
    """
    if out_dtype not in OUT_DTYPES:
        raise PluginError(
            f"{DEQUANT_OP}: out_dtype must be TensorProto.FLOAT (1) or FLOAT16 (10), got {out_dtype}"
        )
    return helper.make_node(
        DEQUANT_OP,
        [codes, params],
        [out],
        name=name or out + "_dequant",
        domain=DOMAIN,
        out_dtype=int(out_dtype),
        **_plugin_attrs(),
    )


def params_initializer(name: str, params: npt.NDArray[np.float32]) -> TensorProto:
    """The float32[7] params vector (`plugins.spec`) as an ONNX initializer named `name`.

    Raises:
        PluginError: `params` fails `plugins.spec.validate_params`.
    """
    return numpy_helper.from_array(validate_params(params), name)


class _Body:
    """Collects the nodes of one function body with unique, readable value names."""

    def __init__(self) -> None:
        self.nodes: list[NodeProto] = []

    def op(self, op_type: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attrs))
        return output

    def const(self, name: str, value: float | int, dtype: int) -> str:
        return self.op("Constant", [], name, value=helper.make_tensor(name, dtype, [], [value]))

    def params(self, params: str) -> tuple[str, ...]:
        """Scalars bp, s_d, s_p, s_n, D, P, N gathered from the float32[7] params input."""
        names = []
        layout = ((BP, "bp"), (S_D, "s_d"), (S_P, "s_p"), (S_N, "s_n"), (D, "d"), (P, "p"), (N, "n"))
        for index, name in layout:
            idx = self.const(f"{name}_index", index, TensorProto.INT64)
            names.append(self.op("Gather", [params, idx], name, axis=0))
        return tuple(names)


def _opsets(opset: int) -> list[onnx.OperatorSetIdProto]:
    return [helper.make_opsetid("", opset)]


def _quantize_function(opset: int) -> FunctionProto:
    b = _Body()
    xf = b.op("Cast", ["x"], "xf", to=TensorProto.FLOAT)  # float16 -> float32 is exact
    bp, s_d, s_p, s_n, d, p, n = b.params("params")
    zero = b.const("zero", 0.0, TensorProto.FLOAT)
    one = b.const("one", 1.0, TensorProto.FLOAT)
    neg_d = b.op("Neg", [d], "neg_d")
    # dense: clamp(rint(x / s_d), -D, D)
    r_dense = b.op("Round", [b.op("Div", [xf, s_d], "t_dense")], "r_dense")
    q_dense = b.op("Clip", [r_dense, neg_d, d], "q_dense")
    # positive tail: D + clamp(rint((x - bp) / s_p), 0, P)
    t_pos = b.op("Div", [b.op("Sub", [xf, bp], "x_minus_bp"), s_p], "t_pos")
    q_pos = b.op("Add", [d, b.op("Clip", [b.op("Round", [t_pos], "r_pos"), zero, p], "c_pos")], "q_pos")
    # negative tail: -(D + clamp(rint((-x - bp) / s_n), 0, N)), or -D without a tail (s_n == 0, where
    # the division by the placeholder 1 is computed and discarded)
    has_neg = b.op("Greater", [s_n, zero], "has_neg")
    s_n_safe = b.op("Where", [has_neg, s_n, one], "s_n_safe")
    t_neg = b.op("Div", [b.op("Sub", [b.op("Neg", [xf], "neg_x"), bp], "neg_x_minus_bp"), s_n_safe], "t_neg")
    c_neg = b.op("Clip", [b.op("Round", [t_neg], "r_neg"), zero, n], "c_neg")
    q_tail = b.op("Neg", [b.op("Add", [d, c_neg], "d_plus_c_neg")], "q_tail")
    q_neg = b.op("Where", [has_neg, q_tail, neg_d], "q_neg")
    in_dense = b.op("LessOrEqual", [b.op("Abs", [xf], "abs_x"), bp], "in_dense")
    above = b.op("Greater", [xf, bp], "above")
    q = b.op("Where", [in_dense, q_dense, b.op("Where", [above, q_pos, q_neg], "q_tails")], "q_float")
    q = b.op("Where", [b.op("IsNaN", [xf], "is_nan"), zero, q], "q_no_nan")
    b.op("Cast", [q], "codes", to=TensorProto.INT8)
    return helper.make_function(
        DOMAIN,
        QUANTIZE_OP,
        ["x", "params"],
        ["codes"],
        b.nodes,
        _opsets(opset),
        attributes=list(PLUGIN_ATTRIBUTES),
        doc_string="Dual-region b-bit codes of x (docs/dual_region_codes.md).",
    )


def _dequant_function(opset: int) -> FunctionProto:
    b = _Body()
    qf = b.op("Cast", ["codes"], "q_raw", to=TensorProto.FLOAT)
    bp, s_d, s_p, s_n, d, p, n = b.params("params")
    # saturate to the code range [-(D + N), D + P]
    lowest = b.op("Neg", [b.op("Add", [d, n], "d_plus_n")], "lowest")
    q = b.op("Clip", [qf, lowest, b.op("Add", [d, p], "d_plus_p")], "q")
    dense = b.op("Mul", [q, s_d], "dense")
    pos = b.op("Add", [bp, b.op("Mul", [b.op("Sub", [q, d], "q_minus_d"), s_p], "pos_offset")], "pos")
    neg_q_minus_d = b.op("Sub", [b.op("Neg", [q], "neg_q"), d], "neg_q_minus_d")
    neg_mag = b.op("Add", [bp, b.op("Mul", [neg_q_minus_d, s_n], "neg_offset")], "neg_mag")
    neg = b.op("Neg", [neg_mag], "neg")
    below = b.op("Less", [q, b.op("Neg", [d], "neg_d")], "below")
    v_low = b.op("Where", [below, neg, dense], "v_low")
    v = b.op("Where", [b.op("Greater", [q, d], "above"), pos, v_low], "v")
    # the body's Cast reads the node attribute `out_dtype` under its own attribute name `to`
    to = onnx.AttributeProto(name="to", ref_attr_name="out_dtype", type=onnx.AttributeProto.INT)
    cast = helper.make_node("Cast", [v], ["out"])
    cast.attribute.append(to)
    b.nodes.append(cast)
    fn = helper.make_function(
        DOMAIN,
        DEQUANT_OP,
        ["codes", "params"],
        ["out"],
        b.nodes,
        _opsets(opset),
        attributes=list(PLUGIN_ATTRIBUTES),
        doc_string="Values of dual-region b-bit codes (docs/dual_region_codes.md).",
    )
    fn.attribute_proto.append(helper.make_attribute("out_dtype", int(TensorProto.FLOAT)))
    return fn


def functions(opset: int = MIN_OPSET) -> list[FunctionProto]:
    """The local functions of both ops, importing the default domain at `opset`.

    Raises:
        PluginError: `opset` < 17.
    """
    if opset < MIN_OPSET:
        raise PluginError(
            f"dual-region ONNX functions: need default-domain opset >= {MIN_OPSET}, got {opset}"
        )
    return [_quantize_function(opset), _dequant_function(opset)]


def _default_opset(model: ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise PluginError(f"model {model.graph.name!r}: no default-domain opset import")


def _is_ours(fn: FunctionProto) -> bool:
    return fn.domain == DOMAIN and fn.name in (QUANTIZE_OP, DEQUANT_OP)


def attach_functions(model: ModelProto) -> ModelProto:
    """A copy of `model` carrying both local functions and the `drq` opset import (idempotent).

    The functions import the model's own default-domain opset, as ONNX requires of local functions.

    Raises:
        PluginError: the model's default-domain opset is < 17 or missing.
    """
    out = ModelProto()
    out.CopyFrom(model)
    fns = functions(_default_opset(model))
    kept = [fn for fn in out.functions if not _is_ours(fn)]
    del out.functions[:]
    out.functions.extend(kept + fns)
    if not any(entry.domain == DOMAIN for entry in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, FUNCTION_VERSION))
    return out


def strip_functions(model: ModelProto) -> ModelProto:
    """A copy of `model` without the dual-region local function bodies (nodes and opset import stay).

    onnx-tensorrt's `parseNode` (ModelImporter.cpp) dispatches a node whose op_type names a local
    function to the LocalFunctionImporter before the FallbackPluginImporter in TensorRT <= 10.6; later
    releases prefer a registered plugin (10.7) or a node carrying `plugin_namespace` (10.15+, with
    `OnnxParserFlag.ENABLE_PLUGIN_OVERRIDE` as the global switch). Without a body every version can only
    import the node as the plugin `drq::<op_type>`, so a missing plugin fails the parse instead of
    silently running the slower inlined function.
    """
    out = ModelProto()
    out.CopyFrom(model)
    kept = [fn for fn in out.functions if not _is_ours(fn)]
    del out.functions[:]
    out.functions.extend(kept)
    return out
