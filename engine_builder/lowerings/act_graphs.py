"""Subgraph builders for quantized conv inputs, shared by the lowerings.

Two families:

* standard Q/DQ (`qdq_pair`) and the onnxruntime-CPU integer conv (`integer_conv`);
* float emulation (`fake_*`) of every recipe grid with plain float ops, in the float32 operation order
  of `calib.grids` / `plugins.reference` / the torch quantizers, so results match bit for bit.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto

from calib.grids import bbit_grid, paper_grid, split_grid
from calib.recipe import DualRegionAct, UniformAct
from engine_builder.lowerings.graph import GraphEditor

_F32 = np.float32


def qdq_pair(ed: GraphEditor, x: str, scale: float | np.float32, before: onnx.NodeProto, base: str,
             zero_point: int = 0, dtype: type = np.int8) -> str:
    """QuantizeLinear -> DequantizeLinear with a per-tensor constant scale; returns the DQ output."""
    s = ed.scalar(f"{base}_scale", _F32(scale))
    z = ed.scalar(f"{base}_zero_point", zero_point, dtype)
    q = ed.make1("QuantizeLinear", [x, s, z], f"{base}_QuantizeLinear", before)
    return ed.make1("DequantizeLinear", [q, s, z], f"{base}_DequantizeLinear", before)


def integer_conv(ed: GraphEditor, node: onnx.NodeProto, branches: list[tuple[str, np.float32, np.ndarray]],
                 w_scale: np.ndarray, w_axis: int | None, base: str) -> str:
    """onnxruntime-CPU form of Conv over quantized inputs: ConvInteger per branch, one float epilogue.

    Each branch is (float input, activation scale, int8 weight codes). The input is quantized to uint8
    with zero point 128 (the same codes as int8 with zero point 0, shifted), which onnxruntime's
    ConvInteger runs on MLAS's u8s8 integer GEMM; the int32 sums are exact, then
    y = sum_i Cast(acc_i) * (s_i * s_w) + bias. Only valid for Conv (weights OIHW, scale along O).

    Returns:
        The float output tensor (the caller renames it to the conv's output).
    """
    out_ch = branches[0][2].shape[0]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    terms: list[str] = []
    for i, (x, act_scale, codes) in enumerate(branches):
        tag = f"{base}_b{i}"
        s = ed.scalar(f"{tag}_scale", _F32(act_scale))
        z = ed.scalar(f"{tag}_zero_point", 128, np.uint8)
        q = ed.make1("QuantizeLinear", [x, s, z], f"{tag}_QuantizeLinear", node)
        w = ed.add_init(f"{tag}_weight_int8", codes)
        wz = ed.scalar(f"{tag}_weight_zero_point", 0, np.int8)
        acc = ed.make1("ConvInteger", [q, w, z, wz], f"{tag}_ConvInteger", node, **attrs)
        acc_f = ed.make1("Cast", [acc], f"{tag}_Cast", node, to=TensorProto.FLOAT)
        ws = np.broadcast_to(w_scale if w_axis is not None else w_scale.reshape(1), (out_ch,))
        mul = ed.add_init(f"{tag}_out_scale", (_F32(act_scale) * ws.astype(_F32)).astype(_F32).reshape(1, out_ch, 1, 1))
        terms.append(ed.make1("Mul", [acc_f, mul], f"{tag}_Rescale", node))
    total = terms[0]
    for i, term in enumerate(terms[1:]):
        total = ed.make1("Add", [total, term], f"{base}_Sum{i}", node)
    if len(node.input) > 2 and node.input[2]:
        bias = ed.add_init(f"{base}_bias", ed.array(node.input[2]).astype(_F32).reshape(1, out_ch, 1, 1))
        total = ed.make1("Add", [total, bias], f"{base}_Bias", node)
    return total


# ---------------------------------------------------------------------------------------------------
# Float emulation (fakequant)


def _round_clip(ed: GraphEditor, v: str, lo: float, hi: float, base: str, before: onnx.NodeProto) -> str:
    r = ed.make1("Round", [v], f"{base}_Round", before)  # ONNX Round: half to even, like torch.round / rint
    return ed.make1("Clip", [r, ed.scalar(f"{base}_qmin", lo), ed.scalar(f"{base}_qmax", hi)], f"{base}_Clip", before)


def fake_uniform(ed: GraphEditor, x: str, act: UniformAct, before: onnx.NodeProto, base: str) -> str:
    """x_hat = s * (clamp(rint(x / s) + z, qmin, qmax) - z) (zero point terms omitted when z = 0)."""
    s = ed.scalar(f"{base}_scale", _F32(act.scale))
    v = ed.make1("Div", [x, s], f"{base}_Div", before)
    v = ed.make1("Round", [v], f"{base}_Round", before)
    if act.zero_point:
        z = ed.scalar(f"{base}_zero_point", _F32(act.zero_point))
        v = ed.make1("Add", [v, z], f"{base}_AddZp", before)
    v = ed.make1("Clip", [v, ed.scalar(f"{base}_qmin", act.qmin), ed.scalar(f"{base}_qmax", act.qmax)],
                 f"{base}_Clip", before)
    if act.zero_point:
        v = ed.make1("Sub", [v, z], f"{base}_SubZp", before)
    return ed.make1("Mul", [v, s], f"{base}_Mul", before)


def fake_split(ed: GraphEditor, x: str, act: DualRegionAct, before: onnx.NodeProto, base: str) -> str:
    """x_hat = s_d * q_d + s_o * q_o of the split budget (`calib.grids` docstring)."""
    g = split_grid(act)
    c = ed.make1("Clip", [x, ed.scalar(f"{base}_neg_bp", -g.breakpoint), ed.scalar(f"{base}_bp", g.breakpoint)],
                 f"{base}_ClipDense", before)
    s_d = ed.scalar(f"{base}_s_d", g.s_d)
    qd = _round_clip(ed, ed.make1("Div", [c, s_d], f"{base}_DivDense", before), -g.dense_qmax, g.dense_qmax,
                     f"{base}_dense", before)
    r = ed.make1("Sub", [x, c], f"{base}_Residual", before)
    s_o = ed.scalar(f"{base}_s_o", g.s_o)
    qo = _round_clip(ed, ed.make1("Div", [r, s_o], f"{base}_DivOutlier", before), g.outlier_qmin, g.outlier_qmax,
                     f"{base}_outlier", before)
    dense = ed.make1("Mul", [qd, s_d], f"{base}_MulDense", before)
    outl = ed.make1("Mul", [qo, s_o], f"{base}_MulOutlier", before)
    return ed.make1("Add", [dense, outl], f"{base}_Add", before)


def fake_bbit(ed: GraphEditor, x: str, act: DualRegionAct, before: onnx.NodeProto, base: str) -> str:
    """Code then decode exactly as `plugins.reference.quantize` / `dequantize` (NaN handling aside)."""
    g = bbit_grid(act)
    d = _F32(g.dense_limit)
    bp = ed.scalar(f"{base}_bp", g.breakpoint)
    s_d = ed.scalar(f"{base}_s_d", g.s_d)
    s_p = ed.scalar(f"{base}_s_p", g.s_p)
    dd = ed.scalar(f"{base}_D", d)
    dense = _round_clip(ed, ed.make1("Div", [x, s_d], f"{base}_DivDense", before), -d, d, f"{base}_dense", before)
    xp = ed.make1("Sub", [x, bp], f"{base}_SubPos", before)
    kp = _round_clip(ed, ed.make1("Div", [xp, s_p], f"{base}_DivPos", before), 0.0, d, f"{base}_pos", before)
    pos = ed.make1("Add", [dd, kp], f"{base}_PosCode", before)
    if g.s_n > 0:
        s_n = ed.scalar(f"{base}_s_n", g.s_n)
        xn = ed.make1("Sub", [ed.make1("Neg", [x], f"{base}_NegX", before), bp], f"{base}_SubNeg", before)
        kn = _round_clip(ed, ed.make1("Div", [xn, s_n], f"{base}_DivNeg", before), 0.0, d, f"{base}_neg", before)
        neg = ed.make1("Neg", [ed.make1("Add", [dd, kn], f"{base}_NegSum", before)], f"{base}_NegCode", before)
    else:
        neg = ed.scalar(f"{base}_minus_D", -d)
    in_dense = ed.make1("LessOrEqual", [ed.make1("Abs", [x], f"{base}_Abs", before), bp], f"{base}_InDense", before)
    above = ed.make1("Greater", [x, bp], f"{base}_Above", before)
    q = ed.make1("Where", [in_dense, dense, ed.make1("Where", [above, pos, neg], f"{base}_WhereTail", before)],
                 f"{base}_Code", before)
    # decode: dense q * s_d; q > D: bp + (q - D) * s_p; q < -D: -(bp + (-q - D) * s_n)
    v_dense = ed.make1("Mul", [q, s_d], f"{base}_DecDense", before)
    v_pos = ed.make1("Add", [bp, ed.make1("Mul", [ed.make1("Sub", [q, dd], f"{base}_QmD", before), s_p],
                                          f"{base}_PosStep", before)], f"{base}_DecPos", before)
    hi = ed.make1("Greater", [q, dd], f"{base}_IsPos", before)
    if g.s_n > 0:
        qn = ed.make1("Sub", [ed.make1("Neg", [q], f"{base}_NegQ", before), dd], f"{base}_NqmD", before)
        v_neg = ed.make1("Neg", [ed.make1("Add", [bp, ed.make1("Mul", [qn, s_n], f"{base}_NegStep", before)],
                                          f"{base}_NegAbs", before)], f"{base}_DecNeg", before)
        lo = ed.make1("Less", [q, ed.make1("Neg", [dd], f"{base}_MinusD", before)], f"{base}_IsNeg", before)
        v_dense = ed.make1("Where", [lo, v_neg, v_dense], f"{base}_WhereNeg", before)
    return ed.make1("Where", [hi, v_pos, v_dense], f"{base}_Decoded", before)


def fake_paper(ed: GraphEditor, x: str, act: DualRegionAct, before: onnx.NodeProto, base: str) -> str:
    """The authors' simulation grid (`calib.grids` docstring, `paper` budget).

    Signed: dense -bp + k s_d (k = 0..2^b-1), positive tail bp + k s_p, negative tail -bp - k s_n.
    Bounded below: l + k s_lo on [l, bp], bp + k s_hi above.
    """
    g = paper_grid(act)
    bp = ed.scalar(f"{base}_bp", g.breakpoint)
    s_d = ed.scalar(f"{base}_s_d", g.s_d)
    s_p = ed.scalar(f"{base}_s_p", g.s_p)
    # upper piece: bp + clamp(rint((x - bp) / s_p), 0, tail) * s_p
    kp = _round_clip(ed, ed.make1("Div", [ed.make1("Sub", [x, bp], f"{base}_SubPos", before), s_p], f"{base}_DivPos",
                                  before), 0.0, float(g.tail_levels), f"{base}_pos", before)
    v_pos = ed.make1("Add", [bp, ed.make1("Mul", [kp, s_p], f"{base}_PosStep", before)], f"{base}_DecPos", before)
    above = ed.make1("Greater", [x, bp], f"{base}_Above", before)
    if g.bounded_below:
        lo = ed.scalar(f"{base}_lower", g.lower)
        kd = _round_clip(ed, ed.make1("Div", [ed.make1("Sub", [x, lo], f"{base}_SubLo", before), s_d],
                                      f"{base}_DivLo", before), 0.0, float(g.dense_levels), f"{base}_lo", before)
        v_low = ed.make1("Add", [lo, ed.make1("Mul", [kd, s_d], f"{base}_LoStep", before)], f"{base}_DecLo", before)
        return ed.make1("Where", [above, v_pos, v_low], f"{base}_Decoded", before)
    neg_bp = ed.scalar(f"{base}_neg_bp", -g.breakpoint)
    kd = _round_clip(ed, ed.make1("Div", [ed.make1("Add", [x, bp], f"{base}_AddBp", before), s_d], f"{base}_DivDense",
                                  before), 0.0, float(g.dense_levels), f"{base}_dense", before)
    v_dense = ed.make1("Add", [neg_bp, ed.make1("Mul", [kd, s_d], f"{base}_DenseStep", before)], f"{base}_DecDense",
                       before)
    s_n = ed.scalar(f"{base}_s_n", g.s_n)
    xn = ed.make1("Sub", [ed.make1("Neg", [x], f"{base}_NegX", before), bp], f"{base}_SubNeg", before)
    kn = _round_clip(ed, ed.make1("Div", [xn, s_n], f"{base}_DivNeg", before), 0.0, float(g.tail_levels),
                     f"{base}_neg", before)
    v_neg = ed.make1("Sub", [neg_bp, ed.make1("Mul", [kn, s_n], f"{base}_NegStep", before)], f"{base}_DecNeg", before)
    below = ed.make1("Less", [x, neg_bp], f"{base}_Below", before)
    return ed.make1("Where", [above, v_pos, ed.make1("Where", [below, v_neg, v_dense], f"{base}_WhereNeg", before)],
                    f"{base}_Decoded", before)
