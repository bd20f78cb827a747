"""Lowerings on a tiny IMDN-like net: node placement rules on the graph, numerics with onnxruntime."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from drq.grids import bbit_grid, paper_grid, split_grid
from drq.recipe import DualRegionAct, UniformAct
from engine_builder.errors import ExportError
from engine_builder.export.torch_export import export_float_onnx
from engine_builder.lowerings.act_graphs import fake_bbit, fake_paper, fake_split, fake_uniform
from engine_builder.lowerings.common import LoweringOptions
from engine_builder.lowerings.graph import GraphEditor, finalize, layer_map
from engine_builder.lowerings.ort_cpu import lower_for_ort_cpu
from engine_builder.lowerings.registry import LOWERINGS, default_lowering, get_lowering, lower
from plugins import reference
from tests.engine_builder.test_export import LAYERS, TinySR, make_recipe, run_ort

ort = pytest.importorskip("onnxruntime")
_F32 = np.float32


@pytest.fixture(scope="module")
def net() -> TinySR:
    return TinySR().eval()


@pytest.fixture(scope="module")
def float_model(net: TinySR) -> onnx.ModelProto:
    return export_float_onnx(net, scale=2)


@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    return torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)).numpy()


@pytest.fixture(scope="module")
def recipes(net: TinySR) -> dict[str, object]:
    return {b: make_recipe(net, b) for b in ("uniform", "split", "b-bit", "paper")}


def _producers(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in model.graph.node for o in n.output}


def _consumers(model: onnx.ModelProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if name in n.input]


def _inits(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in model.graph.initializer}


def _assert_dynamic_io(model: onnx.ModelProto, elem: int = TensorProto.FLOAT) -> None:
    onnx.checker.check_model(model, full_check=True)
    for value in (model.graph.input[0], model.graph.output[0]):
        assert value.type.tensor_type.elem_type == elem
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param and dims[2].dim_param and dims[3].dim_param, value.name


# ---- float emulation of each grid, bit for bit against an independent NumPy formula -------------------


def _act_graph(builder, act) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["q"], ["y"], name="out")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    ed = GraphEditor(model)
    anchor = model.graph.node[0]
    anchor.input[0] = builder(ed, "x", act, anchor, "a")
    ed.commit()
    return finalize(model)


def _probe(*points: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    pts = np.array(points, dtype=_F32)
    near = np.concatenate([np.nextafter(pts, _F32(np.inf)), np.nextafter(pts, _F32(-np.inf)), pts])
    return np.concatenate([(rng.standard_normal(20000) * 2).astype(_F32), near]).astype(_F32)


def _run1(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x}
    )[0]


@pytest.mark.parametrize("lower_b", [-0.5, -3.0])
def test_fake_bbit_matches_plugin_reference_bit_for_bit(lower_b: float) -> None:
    act = DualRegionAct(budget="b-bit", bits=6, lower=lower_b, breakpoint=0.75, upper=3.5)
    g = bbit_grid(act)
    x = _probe(0.75, -0.75, 3.5, lower_b, g.s_d * 2.5, 0.75 + g.s_p * 1.5)
    expected = reference.dequantize(reference.quantize(x, g.params()), g.params())
    got = _run1(_act_graph(fake_bbit, act), x)
    np.testing.assert_array_equal(got.view(np.int32), expected.view(np.int32))


def test_fake_split_and_uniform_match_numpy_bit_for_bit() -> None:
    act = DualRegionAct(budget="split", bits=4, lower=-2.0, breakpoint=0.5, upper=3.0, outlier_scale=0.25)
    g = split_grid(act)
    x = _probe(0.5, -0.5, g.s_d * 0.5, 0.5 + g.s_o * 0.5, 40.0, -40.0)
    c = np.clip(x, -g.breakpoint, g.breakpoint)
    qd = np.clip(np.rint(c / g.s_d), -g.dense_qmax, g.dense_qmax)
    qo = np.clip(np.rint((x - c) / g.s_o), g.outlier_qmin, g.outlier_qmax)
    expected = (qd * g.s_d + qo * g.s_o).astype(_F32)
    np.testing.assert_array_equal(_run1(_act_graph(fake_split, act), x), expected)
    uni = UniformAct(bits=5, scale=0.0625, zero_point=3, signed=False)
    s = _F32(uni.scale)
    expected = ((np.clip(np.rint(x / s) + _F32(3), 0, 31) - _F32(3)) * s).astype(_F32)
    np.testing.assert_array_equal(_run1(_act_graph(fake_uniform, uni), x), expected)


@pytest.mark.parametrize("lower_b", [-0.25, -2.0])  # bounded below (l >= -bp) and signed
def test_fake_paper_lands_on_the_paper_grid(lower_b: float) -> None:
    act = DualRegionAct(budget="paper", bits=4, lower=lower_b, breakpoint=0.5, upper=2.0)
    g = paper_grid(act)
    x = _probe(0.5, -0.5, 2.0, lower_b)
    got = _run1(_act_graph(fake_paper, act), x)
    if g.bounded_below:
        grid = np.concatenate(
            [g.lower + np.arange(16, dtype=_F32) * g.s_d, g.breakpoint + np.arange(16, dtype=_F32) * g.s_p]
        )
    else:
        grid = np.concatenate(
            [
                -g.breakpoint + np.arange(16, dtype=_F32) * g.s_d,
                g.breakpoint + np.arange(8, dtype=_F32) * g.s_p,
                -g.breakpoint - np.arange(8, dtype=_F32) * g.s_n,
            ]
        )
    grid = grid.astype(_F32)
    assert np.isin(got, grid).all()  # every output is a grid point
    inside = (x >= lower_b) & (x <= 2.0)
    step = max(g.s_d, g.s_p, g.s_n)
    assert np.abs(got[inside] - x[inside]).max() <= step / 2 + 1e-6  # nearest point within the range


# ---- graph rules -------------------------------------------------------------------------------------


def test_registry_names_and_errors() -> None:
    assert set(LOWERINGS) == {"fp32", "fp16", "qdq", "drq-split", "fakequant", "drq-plugin", "mixed", "fp8"}
    with pytest.raises(ExportError, match=r"lowering 'int4': unknown; choose from fp32, fp16"):
        get_lowering("int4")


def test_default_lowering(recipes) -> None:
    assert default_lowering(None) == "fp32"
    assert default_lowering(recipes["uniform"]) == "qdq"
    assert default_lowering(recipes["split"]) == "drq-split"
    assert default_lowering(recipes["b-bit"]) == "drq-plugin"
    assert default_lowering(recipes["paper"]) == "fakequant"


def test_qdq_placement(float_model, recipes) -> None:
    model = lower("qdq", float_model, recipes["uniform"])
    _assert_dynamic_io(model)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["QuantizeLinear"] == len(LAYERS)  # activations only
    assert ops["DequantizeLinear"] == 2 * len(LAYERS)  # activation + weight
    prod, inits = _producers(model), _inits(model)
    for node_name in layer_map(model).values():
        conv = next(n for n in model.graph.node if n.name == node_name)
        dq_x = prod[conv.input[0]]
        assert dq_x.op_type == "DequantizeLinear" and prod[dq_x.input[0]].op_type == "QuantizeLinear"
        assert inits[dq_x.input[2]].data_type == TensorProto.INT8
        assert (
            numpy_helper.to_array(inits[dq_x.input[2]]) == 0
            and numpy_helper.to_array(inits[dq_x.input[1]]).ndim == 0
        )
        dq_w = prod[conv.input[1]]
        assert dq_w.op_type == "DequantizeLinear"
        codes = numpy_helper.to_array(inits[dq_w.input[0]])
        assert codes.dtype == np.int8 and codes.min() >= -127  # narrow range
        axis = next(a.i for a in dq_w.attribute if a.name == "axis")
        assert axis == (1 if conv.op_type == "ConvTranspose" else 0)
        assert (
            conv.input[2] in inits and inits[conv.input[2]].data_type == TensorProto.FLOAT
        )  # bias float, no DQ
    for q in (n for n in model.graph.node if n.op_type == "QuantizeLinear"):  # Q/DQ only feed conv inputs
        (dq,) = _consumers(model, q.output[0])
        assert {c.op_type for c in _consumers(model, dq.output[0])} <= {"Conv", "ConvTranspose"}
    for add in (n for n in model.graph.node if n.op_type == "Add"):  # residual Adds read float tensors
        assert all(prod[i].op_type != "DequantizeLinear" for i in add.input if i in prod)
    assert prod["sr"].op_type not in ("QuantizeLinear", "DequantizeLinear")
    d2s = next(n for n in model.graph.node if n.op_type == "DepthToSpace")
    assert prod[d2s.input[0]].op_type == "Conv"  # pixel shuffle stays in float, straight off the conv
    residual = [
        n
        for n in model.graph.node
        if n.op_type == "Add" and prod.get(n.input[0]) is not None and prod[n.input[0]].op_type == "Conv"
    ]
    assert len(residual) >= 2  # block outputs: conv -> Add with no Q/DQ between (fusable)


def test_qdq_rejects_non_int8_recipes(net, float_model, recipes) -> None:
    with pytest.raises(ExportError, match=r"recipe layer 'head': qdq needs uniform activations.*fakequant"):
        lower("qdq", float_model, recipes["split"])
    four = make_recipe(net, "uniform", a_bits=4)
    with pytest.raises(ExportError, match=r"recipe layer 'head': qdq needs 8-bit signed symmetric .*4-bit"):
        lower("qdq", float_model, four)
    with pytest.raises(ExportError, match="qdq: needs a recipe"):
        lower("qdq", float_model, None)


def test_drq_split_two_convs_per_layer(float_model, recipes) -> None:
    model = lower("drq-split", float_model, recipes["split"])
    _assert_dynamic_io(model)
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["Conv"] + ops["ConvTranspose"] == 2 * len(LAYERS)
    assert ops["QuantizeLinear"] == 2 * len(LAYERS) and ops["Clip"] == len(LAYERS)
    prod, inits = _producers(model), _inits(model)
    for name, node_name in layer_map(model).items():
        dense = next(n for n in model.graph.node if n.name == node_name)
        add = _consumers(model, dense.output[0])
        assert len(add) == 1 and add[0].op_type == "Add"
        twin = prod[[i for i in add[0].input if i != dense.output[0]][0]]
        assert twin.op_type == dense.op_type and len(twin.input) == 2 and len(dense.input) == 3  # bias on one
        assert twin.input[1] == dense.input[1]  # the same DQ'd weights
        q_dense = prod[prod[dense.input[0]].input[0]]
        assert q_dense.op_type == "QuantizeLinear" and prod[q_dense.input[0]].op_type == "Clip"
        q_out = prod[prod[twin.input[0]].input[0]]
        assert q_out.op_type == "QuantizeLinear" and prod[q_out.input[0]].op_type == "Sub"
        g = split_grid(recipes["split"].layers[name].act)
        assert numpy_helper.to_array(inits[q_dense.input[1]]) == g.s_d
        assert numpy_helper.to_array(inits[q_out.input[1]]) == g.s_o


def test_drq_split_outlier_channels_only(float_model, recipes, lr) -> None:
    recipe = recipes["split"]
    full = lower("drq-split", float_model, recipe)
    few = lower("drq-split", float_model, recipe, LoweringOptions(outlier_channels_only=True))
    _assert_dynamic_io(few)
    gathers = [n for n in few.graph.node if n.op_type == "Gather" and n.input[1].endswith("outlier_channels")]
    with_channels = [n for n, l in recipe.layers.items() if l.act.outlier_channels and l.op == "conv2d"]
    assert len(gathers) == len(with_channels) > 0
    # the recipe's channels were observed on this very input: restricting the branch changes nothing
    np.testing.assert_allclose(run_ort(few, lr), run_ort(full, lr), atol=2e-5)


def test_drq_split_rejects_other_budgets(float_model, recipes) -> None:
    with pytest.raises(
        ExportError, match=r"drq-split lowers the 'split' budget.*'b-bit'; use --lowering drq-plugin"
    ):
        lower("drq-split", float_model, recipes["b-bit"])


@pytest.mark.parametrize("low,budget", [("qdq", "uniform"), ("drq-split", "split")])
def test_ort_cpu_target_fuses_into_qlinearconv(float_model, recipes, lr, low, budget) -> None:
    recipe = recipes[budget]
    trt = lower(low, float_model, recipe)
    cpu = lower_for_ort_cpu(low, float_model, recipe, LoweringOptions(), [lr])
    _assert_dynamic_io(cpu)
    convs = sum(1 for layer in recipe.layers.values() if layer.op == "conv2d")
    branches = 2 if budget == "split" else 1
    ops = Counter(n.op_type for n in cpu.graph.node)
    assert ops["Conv"] == convs * branches
    inits, prod = _inits(cpu), _producers(cpu)
    for conv in (n for n in cpu.graph.node if n.op_type == "Conv"):
        x_zp = inits[prod[conv.input[0]].input[2]]
        assert x_zp.data_type == TensorProto.UINT8 and numpy_helper.to_array(x_zp) == 128  # u8 activations
        w_zp = inits[prod[conv.input[1]].input[2]]  # u8 weights, zero point 128: no int16 saturation
        assert w_zp.data_type == TensorProto.UINT8 and (numpy_helper.to_array(w_zp) == 128).all()
        if len(conv.input) > 2:
            assert inits[prod[conv.input[2]].input[0]].data_type == TensorProto.INT32  # int32 bias
        (q_out,) = _consumers(cpu, conv.output[0])
        assert q_out.op_type == "QuantizeLinear"  # output Q: what onnxruntime needs to fuse
    # the CPU graph's output quantization (its one approximation) costs little
    out, ref = run_ort(cpu, lr), run_ort(trt, lr)
    assert np.abs(out - ref).max() < 0.05 and np.abs(out - ref).mean() < 5e-3


def test_qlinearconv_fusion_happens_in_onnxruntime(float_model, recipes, lr, tmp_path) -> None:
    cpu = lower_for_ort_cpu("qdq", float_model, recipes["uniform"], LoweringOptions(), [lr])
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "opt.onnx")
    ort.InferenceSession(cpu.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    fused = Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    assert fused["QLinearConv"] == sum(
        1 for layer in recipes["uniform"].layers.values() if layer.op == "conv2d"
    )


def test_fp16_precision_in_the_graph(float_model, lr) -> None:
    model = lower("fp16", float_model, None)
    _assert_dynamic_io(model)
    floats = [t for t in model.graph.initializer if t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)]
    assert all(t.data_type == TensorProto.FLOAT16 for t in floats if t.dims)  # weights
    ref = run_ort(float_model, lr)
    out = run_ort(model, lr)
    assert out.dtype == np.float32 and 0 < np.abs(out - ref).max() < 5e-3
    half = lower("fp16", float_model, None, LoweringOptions(io_dtype="fp16"))
    _assert_dynamic_io(half, TensorProto.FLOAT16)
    assert not any(n.op_type == "Cast" and n.input[0] == "lr" for n in half.graph.node)
    np.testing.assert_allclose(run_ort(half, lr.astype(np.float16)).astype(np.float32), out, atol=2e-3)


@pytest.mark.parametrize("budget", ["uniform", "split", "b-bit", "paper"])
def test_fakequant_matches_torch_fake_quant(net, float_model, recipes, lr, budget) -> None:
    """fakequant vs an independent torch fake quantization of the same recipe (hooks on the float net)."""
    recipe = recipes[budget]
    model = lower("fakequant", float_model, recipe)
    _assert_dynamic_io(model)
    expected = _torch_fake_quant(net, recipe, lr)
    out = run_ort(model, lr)
    # onnxruntime's and torch's convs sum in different orders, so a value within float rounding of a
    # quantization step boundary can round to the neighbouring code in one of them (seen on 26 of 3072
    # outputs, changing with onnxruntime's thread split): almost every output agrees to float rounding,
    # and the rest by at most a few steps' worth of downstream change.
    close = np.isclose(out, expected, rtol=0, atol=2e-5)
    assert close.mean() > 0.97, f"{(~close).sum()} of {close.size} outputs differ"
    assert np.abs(out - expected).max() < 1e-2
    assert np.abs(out - run_ort(float_model, lr)).max() > 1e-4  # and quantization did something


def test_lowerings_report_missing_layers(float_model, recipes) -> None:
    recipe = recipes["uniform"]
    bad = replace(recipe, layers={"nope.conv": recipe.layers["head"]})
    with pytest.raises(
        ExportError, match=r"recipe layer 'nope.conv': not in the exported graph \(qdq\); graph layers: head"
    ):
        lower("qdq", float_model, bad)


def _np_act(act, x: np.ndarray) -> np.ndarray:
    if isinstance(act, UniformAct):
        s = _F32(act.scale)
        return (np.clip(np.rint(x / s) + _F32(act.zero_point), act.qmin, act.qmax) - _F32(act.zero_point)) * s
    if act.budget == "b-bit":
        p = bbit_grid(act).params()
        return reference.dequantize(reference.quantize(x, p), p)
    if act.budget == "split":
        g = split_grid(act)
        c = np.clip(x, -g.breakpoint, g.breakpoint)
        return (
            np.clip(np.rint(c / g.s_d), -g.dense_qmax, g.dense_qmax) * g.s_d
            + np.clip(np.rint((x - c) / g.s_o), g.outlier_qmin, g.outlier_qmax) * g.s_o
        )
    g = paper_grid(act)  # paper: nearest grid point, piecewise
    if g.bounded_below:
        low = g.lower + np.clip(np.rint((x - g.lower) / g.s_d), 0, g.dense_levels) * g.s_d
        return np.where(
            x > g.breakpoint,
            g.breakpoint + np.clip(np.rint((x - g.breakpoint) / g.s_p), 0, g.tail_levels) * g.s_p,
            low,
        )
    dense = -g.breakpoint + np.clip(np.rint((x + g.breakpoint) / g.s_d), 0, g.dense_levels) * g.s_d
    pos = g.breakpoint + np.clip(np.rint((x - g.breakpoint) / g.s_p), 0, g.tail_levels) * g.s_p
    neg = -g.breakpoint - np.clip(np.rint((-x - g.breakpoint) / g.s_n), 0, g.tail_levels) * g.s_n
    return np.where(x > g.breakpoint, pos, np.where(x < -g.breakpoint, neg, dense))


def _torch_fake_quant(net: TinySR, recipe, lr: np.ndarray) -> np.ndarray:
    modules = dict(net.named_modules())
    hooks, saved = [], {}
    for name, layer in recipe.layers.items():
        mod = modules[name]
        w = mod.weight.detach()
        shape = [1] * w.ndim
        axis = layer.weight.axis
        shape[axis] = -1
        s = torch.tensor(layer.weight.scale, dtype=torch.float32).reshape(shape)
        saved[name] = w.clone()
        mod.weight.data = torch.clamp(torch.round(w / s), -layer.weight.qmax, layer.weight.qmax) * s

        def hook(m, inp, act=layer.act):
            x = inp[0].detach().numpy()
            return (torch.from_numpy(np.asarray(_np_act(act, x), dtype=_F32)),)

        hooks.append(mod.register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            return net(torch.from_numpy(lr)).numpy()
    finally:
        for h in hooks:
            h.remove()
        for name, w in saved.items():
            modules[name].weight.data = w


def test_drq_split_below_8_bits_clips_outlier_codes(net, float_model, lr) -> None:
    """int8 QuantizeLinear saturates at -128..127; a 4-bit outlier code must stop at -8..7."""
    recipe = make_recipe(net, "split", a_bits=4, w_bits=4)
    recipe = replace(
        recipe,
        layers={
            n: replace(l, act=replace(l.act, outlier_scale=l.act.outlier_scale / 8))
            for n, l in recipe.layers.items()
        },
    )  # small s_o: codes would exceed 7
    split = lower("drq-split", float_model, recipe)
    clips = [n for n in split.graph.node if n.name.endswith("input_ClipOutlier")]
    assert len(clips) == len(LAYERS)
    np.testing.assert_allclose(
        run_ort(split, lr), run_ort(lower("fakequant", float_model, recipe), lr), atol=3e-5
    )


class _Shared(torch.nn.Module):
    """One conv called twice (CARN-M shares its residual blocks this way)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.head = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.body = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.body(self.head(x)) + x)


def test_shared_layer_is_lowered_at_every_call(lr) -> None:
    from engine_builder.lowerings.graph import layer_nodes

    net = _Shared().eval()
    graph = export_float_onnx(net)
    assert [len(v) for v in layer_nodes(graph).values()] == [1, 2]
    recipe = make_recipe(net, "uniform", names=("head", "body"), x=torch.from_numpy(lr))
    qdq = lower("qdq", graph, recipe)
    assert Counter(n.op_type for n in qdq.graph.node)["QuantizeLinear"] == 3
    np.testing.assert_allclose(
        run_ort(lower("fakequant", graph, recipe), lr), _torch_fake_quant(net, recipe, lr), atol=2e-5
    )


def test_calibration_cache_and_qdq_graph_carry_the_same_scales(float_model, recipes) -> None:
    """TensorRT <= 10 takes the recipe through the calibration cache, TensorRT 11 through qdq's Q/DQ:
    both must hand TensorRT the same scale for the same conv input."""
    from engine_builder.calib_cache import cache_from_recipe, input_tensor_map

    recipe = recipes["uniform"]
    tensors = input_tensor_map(float_model)
    cache = cache_from_recipe(recipe, tensors, version="10.13.0")
    model = lower("qdq", float_model, recipe)
    prod, inits = _producers(model), _inits(model)
    for layer, node_name in layer_map(model).items():
        conv = next(n for n in model.graph.node if n.name == node_name)
        q = prod[prod[conv.input[0]].input[0]]
        assert q.input[0] == tensors[layer]  # the Q/DQ sits on the tensor the cache names
        assert float(numpy_helper.to_array(inits[q.input[1]])) == cache.scales[tensors[layer]]
