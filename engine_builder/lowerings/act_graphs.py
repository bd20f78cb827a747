"""Subgraph builders for quantized conv inputs, shared by the lowerings.

Two families:

* standard Q/DQ (`qdq_pair`) and the onnxruntime-CPU QLinearConv pattern (`qlinear_conv`);
* float emulation (`fake_*`) of every recipe grid with plain float ops, in the float32 operation order
  of `drq.grids` / `plugins.reference` / the torch quantizers, so results match bit for bit.
"""

from __future__ import annotations

import numpy as np
import onnx

from drq.grids import bbit_grid, paper_grid, split_grid
from drq.recipe import DualRegionAct, UniformAct
from engine_builder.lowerings.graph import GraphEditor

_F32 = np.float32


def qdq_pair(
    ed: GraphEditor,
    x: str,
    scale: float | np.float32,
    before: onnx.NodeProto,
    base: str,
    zero_point: int = 0,
    dtype: type = np.int8,
) -> str:
    """QuantizeLinear -> DequantizeLinear with a per-tensor constant scale; returns the DQ output."""
    s = ed.scalar(f"{base}_scale", _F32(scale))
    z = ed.scalar(f"{base}_zero_point", zero_point, dtype)
    q = ed.make1("QuantizeLinear", [x, s, z], f"{base}_QuantizeLinear", before)
    return ed.make1("DequantizeLinear", [q, s, z], f"{base}_DequantizeLinear", before)


def qlinear_conv(
    ed: GraphEditor,
    node: onnx.NodeProto,
    branches: list[tuple[str, np.float32, np.ndarray]],
    w_scale: np.ndarray,
    w_axis: int | None,
    out_range: tuple[float, float],
    base: str,
    with_bias: bool = True,
    input_zero_point: int = 0,
    weight_type: str = "uint8",
) -> str:
    """onnxruntime-CPU form of a Conv over quantized inputs: one QDQ group per branch that onnxruntime
    fuses into QLinearConv (x86 MLAS u8s8 kernels).

    onnxruntime's QDQ Conv selector (qdq_selectors.cc, ConvNodeGroupSelector) fuses DQ(x) -> Conv(DQ(w),
    DQ(bias)) -> Q only when every input has a DQ (bias: int32, scale s_x * s_w), the output has a Q,
    and, off ARM, the activation is uint8 (`QDQIsInt8Allowed()` is false on x86). So each branch is
    Q(x, s, 128) (uint8 codes = the int8 codes + 128: same values) -> DQ -> Conv -> Q(out, uint8) -> DQ,
    with the output quantized on `out_range` (observed float range of the conv output: the one
    approximation this target adds; the bias is rounded to int32 at scale s * s_w).

    The new nodes go in front of `node` (whose attributes and bias they take; `with_bias=False` drops it).
    `weight_type` (`LoweringOptions.ort_weights`): "uint8" stores the weight codes + 128 with zero point
    128 (MLAS's U8U8 kernels widen to 16 bits first: exact on every x86 CPU); "int8" the codes as they are
    (U8S8: fastest, but on x86 without VNNI its vpmaddubsw saturates pairs of u8 x s8 products at int16,
    measured at up to 92 output codes off with 64-channel 3x3 convs on an AVX2-only CPU: onnxruntime's
    "reduce_range" caveat); "int7" the codes halved (rint(q / 2), scale 2 s_w: 7-bit weights, U8S8 speed,
    no saturation since 2 x 255 x 64 < 2^15).
    `input_zero_point` is the int8 zero point z of a shifted grid (x_hat = s (q - z)): the uint8 zero
    point becomes 128 + z, and QLinearConv pads with it, i.e. with x = 0, as the float conv does.

    Returns:
        The float output tensor (the caller renames it to the conv's output).
    """
    out_ch = branches[0][2].shape[0]
    lo, hi = min(float(out_range[0]), 0.0), max(float(out_range[1]), 0.0)
    y_scale = _F32(max(hi - lo, 1e-8) / 255.0)
    y_zp = int(np.clip(np.rint(-lo / y_scale), 0, 255))
    ws = np.broadcast_to(w_scale.reshape(-1) if w_axis is not None else w_scale.reshape(1), (out_ch,)).astype(
        _F32
    )
    if weight_type == "int7":
        ws = (ws * _F32(2)).astype(_F32)
    terms: list[str] = []
    for i, (x, act_scale, codes) in enumerate(branches):
        tag = f"{base}_b{i}"
        x_dq = qdq_pair(
            ed, x, act_scale, node, f"{tag}_input", zero_point=128 + input_zero_point, dtype=np.uint8
        )
        w_codes, w_zp = ort_weight_codes(codes, weight_type)
        w = ed.add_init(f"{tag}_weight_{weight_type}", w_codes)
        w_s = ed.add_init(f"{tag}_weight_scale", ws)
        w_z = ed.add_init(f"{tag}_weight_zero_point", np.full(out_ch, w_zp, dtype=w_codes.dtype))
        w_dq = ed.make1("DequantizeLinear", [w, w_s, w_z], f"{tag}_weight_DequantizeLinear", node, axis=0)
        inputs = [x_dq, w_dq]
        if with_bias and i == 0 and len(node.input) > 2 and node.input[2]:
            b_scale = (_F32(act_scale) * ws).astype(_F32)
            b_int = np.clip(
                np.rint(ed.array(node.input[2]).astype(np.float64) / b_scale), -(2**31), 2**31 - 1
            )
            b = ed.add_init(f"{tag}_bias_int32", b_int.astype(np.int32))
            b_s = ed.add_init(f"{tag}_bias_scale", b_scale)
            inputs.append(
                ed.make1("DequantizeLinear", [b, b_s], f"{tag}_bias_DequantizeLinear", node, axis=0)
            )
        conv = onnx.helper.make_node(
            "Conv", inputs, [ed.unique(f"{tag}_conv_out")], name=ed.unique(f"{tag}_Conv")
        )
        conv.attribute.extend(node.attribute)
        ed.place(conv, node)
        terms.append(
            qdq_pair(ed, conv.output[0], y_scale, node, f"{tag}_output", zero_point=y_zp, dtype=np.uint8)
        )
    total = terms[0]
    for i, term in enumerate(terms[1:]):
        total = ed.make1("Add", [total, term], f"{base}_Sum{i}", node)
    return total


def ort_weight_codes(codes: np.ndarray, weight_type: str) -> tuple[np.ndarray, int]:
    """Symmetric int8 weight codes in the stored type of `qlinear_conv` (see there) and its zero point."""
    if weight_type == "uint8":
        return (codes.astype(np.int16) + 128).astype(np.uint8), 128
    if weight_type == "int7":
        return np.clip(np.rint(codes.astype(_F32) / _F32(2)), -63, 63).astype(np.int8), 0
    if weight_type == "int8":
        return codes.astype(np.int8), 0
    raise ValueError(f"weight_type: must be uint8, int8 or int7, got {weight_type!r}")


# ---------------------------------------------------------------------------------------------------
# Float emulation (fakequant)


def _round_clip(ed: GraphEditor, v: str, lo: float, hi: float, base: str, before: onnx.NodeProto) -> str:
    r = ed.make1("Round", [v], f"{base}_Round", before)  # ONNX Round: half to even, like torch.round / rint
    return ed.make1(
        "Clip", [r, ed.scalar(f"{base}_qmin", lo), ed.scalar(f"{base}_qmax", hi)], f"{base}_Clip", before
    )


def fake_uniform(ed: GraphEditor, x: str, act: UniformAct, before: onnx.NodeProto, base: str) -> str:
    """x_hat = rint(clamp(x / s, qmin - z, qmax - z)) * s (the torch quantizer's order; equal to
    s * (clamp(rint(x / s) + z, qmin, qmax) - z) because the clamp bounds are integers)."""
    s = ed.scalar(f"{base}_scale", _F32(act.scale))
    v = ed.make1("Div", [x, s], f"{base}_Div", before)
    v = ed.make1(
        "Clip",
        [
            v,
            ed.scalar(f"{base}_qmin", act.qmin - act.zero_point),
            ed.scalar(f"{base}_qmax", act.qmax - act.zero_point),
        ],
        f"{base}_Clip",
        before,
    )
    v = ed.make1("Round", [v], f"{base}_Round", before)
    return ed.make1("Mul", [v, s], f"{base}_Mul", before)


def fake_split(ed: GraphEditor, x: str, act: DualRegionAct, before: onnx.NodeProto, base: str) -> str:
    """x_hat = s_d * q_d + s_o * q_o of the split budget (`drq.grids` docstring)."""
    g = split_grid(act)
    c = ed.make1(
        "Clip",
        [x, ed.scalar(f"{base}_neg_bp", -g.breakpoint), ed.scalar(f"{base}_bp", g.breakpoint)],
        f"{base}_ClipDense",
        before,
    )
    s_d = ed.scalar(f"{base}_s_d", g.s_d)
    qd = _round_clip(
        ed,
        ed.make1("Div", [c, s_d], f"{base}_DivDense", before),
        -g.dense_qmax,
        g.dense_qmax,
        f"{base}_dense",
        before,
    )
    r = ed.make1("Sub", [x, c], f"{base}_Residual", before)
    s_o = ed.scalar(f"{base}_s_o", g.s_o)
    qo = _round_clip(
        ed,
        ed.make1("Div", [r, s_o], f"{base}_DivOutlier", before),
        g.outlier_qmin,
        g.outlier_qmax,
        f"{base}_outlier",
        before,
    )
    dense = ed.make1("Mul", [qd, s_d], f"{base}_MulDense", before)
    outl = ed.make1("Mul", [qo, s_o], f"{base}_MulOutlier", before)
    return ed.make1("Add", [dense, outl], f"{base}_Add", before)


def fake_bbit(ed: GraphEditor, x: str, act: DualRegionAct, before: onnx.NodeProto, base: str) -> str:
    """Code then decode exactly as `plugins.reference.quantize` / `dequantize` (NaN handling aside)."""
    g = bbit_grid(act)
    d, p, n = _F32(g.dense_limit), _F32(g.pos_tail_codes), _F32(g.neg_tail_codes)
    bp = ed.scalar(f"{base}_bp", g.breakpoint)
    s_d = ed.scalar(f"{base}_s_d", g.s_d)
    s_p = ed.scalar(f"{base}_s_p", g.s_p)
    dd = ed.scalar(f"{base}_D", d)
    dense = _round_clip(
        ed, ed.make1("Div", [x, s_d], f"{base}_DivDense", before), -d, d, f"{base}_dense", before
    )
    xp = ed.make1("Sub", [x, bp], f"{base}_SubPos", before)
    kp = _round_clip(ed, ed.make1("Div", [xp, s_p], f"{base}_DivPos", before), 0.0, p, f"{base}_pos", before)
    pos = ed.make1("Add", [dd, kp], f"{base}_PosCode", before)
    if g.s_n > 0:
        s_n = ed.scalar(f"{base}_s_n", g.s_n)
        xn = ed.make1("Sub", [ed.make1("Neg", [x], f"{base}_NegX", before), bp], f"{base}_SubNeg", before)
        kn = _round_clip(
            ed, ed.make1("Div", [xn, s_n], f"{base}_DivNeg", before), 0.0, n, f"{base}_neg", before
        )
        neg = ed.make1(
            "Neg", [ed.make1("Add", [dd, kn], f"{base}_NegSum", before)], f"{base}_NegCode", before
        )
    else:
        neg = ed.scalar(f"{base}_minus_D", -d)
    in_dense = ed.make1(
        "LessOrEqual", [ed.make1("Abs", [x], f"{base}_Abs", before), bp], f"{base}_InDense", before
    )
    above = ed.make1("Greater", [x, bp], f"{base}_Above", before)
    q = ed.make1(
        "Where",
        [in_dense, dense, ed.make1("Where", [above, pos, neg], f"{base}_WhereTail", before)],
        f"{base}_Code",
        before,
    )
    # decode: dense q * s_d; q > D: bp + (q - D) * s_p; q < -D: -(bp + (-q - D) * s_n)
    v_dense = ed.make1("Mul", [q, s_d], f"{base}_DecDense", before)
    v_pos = ed.make1(
        "Add",
        [
            bp,
            ed.make1(
                "Mul", [ed.make1("Sub", [q, dd], f"{base}_QmD", before), s_p], f"{base}_PosStep", before
            ),
        ],
        f"{base}_DecPos",
        before,
    )
    hi = ed.make1("Greater", [q, dd], f"{base}_IsPos", before)
    if g.s_n > 0:
        qn = ed.make1("Sub", [ed.make1("Neg", [q], f"{base}_NegQ", before), dd], f"{base}_NqmD", before)
        v_neg = ed.make1(
            "Neg",
            [
                ed.make1(
                    "Add",
                    [bp, ed.make1("Mul", [qn, s_n], f"{base}_NegStep", before)],
                    f"{base}_NegAbs",
                    before,
                )
            ],
            f"{base}_DecNeg",
            before,
        )
        lo = ed.make1("Less", [q, ed.make1("Neg", [dd], f"{base}_MinusD", before)], f"{base}_IsNeg", before)
        v_dense = ed.make1("Where", [lo, v_neg, v_dense], f"{base}_WhereNeg", before)
    return ed.make1("Where", [hi, v_pos, v_dense], f"{base}_Decoded", before)


def fake_paper(ed: GraphEditor, x: str, act: DualRegionAct, before: onnx.NodeProto, base: str) -> str:
    """The authors' simulation grid (`drq.grids` docstring, `paper` budget).

    Signed: dense -bp + k s_d (k = 0..2^b-1), positive tail bp + k s_p, negative tail -bp - k s_n.
    Bounded below: l + k s_lo on [l, bp], bp + k s_hi above.
    """
    g = paper_grid(act)
    bp = ed.scalar(f"{base}_bp", g.breakpoint)
    s_d = ed.scalar(f"{base}_s_d", g.s_d)
    s_p = ed.scalar(f"{base}_s_p", g.s_p)
    # upper piece: bp + clamp(rint((x - bp) / s_p), 0, tail) * s_p
    kp = _round_clip(
        ed,
        ed.make1("Div", [ed.make1("Sub", [x, bp], f"{base}_SubPos", before), s_p], f"{base}_DivPos", before),
        0.0,
        float(g.tail_levels),
        f"{base}_pos",
        before,
    )
    v_pos = ed.make1(
        "Add", [bp, ed.make1("Mul", [kp, s_p], f"{base}_PosStep", before)], f"{base}_DecPos", before
    )
    above = ed.make1("Greater", [x, bp], f"{base}_Above", before)
    if g.bounded_below:
        lo = ed.scalar(f"{base}_lower", g.lower)
        kd = _round_clip(
            ed,
            ed.make1(
                "Div", [ed.make1("Sub", [x, lo], f"{base}_SubLo", before), s_d], f"{base}_DivLo", before
            ),
            0.0,
            float(g.dense_levels),
            f"{base}_lo",
            before,
        )
        v_low = ed.make1(
            "Add", [lo, ed.make1("Mul", [kd, s_d], f"{base}_LoStep", before)], f"{base}_DecLo", before
        )
        return ed.make1("Where", [above, v_pos, v_low], f"{base}_Decoded", before)
    neg_bp = ed.scalar(f"{base}_neg_bp", -g.breakpoint)
    kd = _round_clip(
        ed,
        ed.make1("Div", [ed.make1("Add", [x, bp], f"{base}_AddBp", before), s_d], f"{base}_DivDense", before),
        0.0,
        float(g.dense_levels),
        f"{base}_dense",
        before,
    )
    v_dense = ed.make1(
        "Add", [neg_bp, ed.make1("Mul", [kd, s_d], f"{base}_DenseStep", before)], f"{base}_DecDense", before
    )
    s_n = ed.scalar(f"{base}_s_n", g.s_n)
    xn = ed.make1("Sub", [ed.make1("Neg", [x], f"{base}_NegX", before), bp], f"{base}_SubNeg", before)
    kn = _round_clip(
        ed,
        ed.make1("Div", [xn, s_n], f"{base}_DivNeg", before),
        0.0,
        float(g.tail_levels),
        f"{base}_neg",
        before,
    )
    v_neg = ed.make1(
        "Sub", [neg_bp, ed.make1("Mul", [kn, s_n], f"{base}_NegStep", before)], f"{base}_DecNeg", before
    )
    below = ed.make1("Less", [x, neg_bp], f"{base}_Below", before)
    return ed.make1(
        "Where",
        [above, v_pos, ed.make1("Where", [below, v_neg, v_dense], f"{base}_WhereNeg", before)],
        f"{base}_Decoded",
        before,
    )
