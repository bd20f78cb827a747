"""The `mixed` lowering: each layer in its plan's form, the exact shift fold, the ort-cpu form."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, numpy_helper

from drq.recipe import LayerRecipe, UniformAct, WeightQuant, f32
from engine_builder.errors import ExportError
from engine_builder.export.torch_export import export_float_onnx
from engine_builder.lowerings.common import LoweringOptions
from engine_builder.lowerings.mixed import shift_fold_bias
from engine_builder.lowerings.ort_cpu import lower_for_ort_cpu
from engine_builder.lowerings.registry import default_lowering, lower
from tests.engine_builder.test_export import LAYERS, TinySR, make_recipe, run_ort

ort = pytest.importorskip("onnxruntime")


def _mixed(net: TinySR, plan: dict[str, str], shifted: dict[str, UniformAct] | None = None):
    """TinySR's split recipe turned into a mixed one: int8 layers get a symmetric (or given) grid."""
    split = make_recipe(net, "split")
    uniform = make_recipe(net, "uniform")
    layers = {}
    for name in LAYERS:
        act = (shifted or {}).get(name, uniform.layers[name].act) if plan[name] == "int8" else None
        layers[name] = replace(split.layers[name], act=act) if act is not None else split.layers[name]
    return replace(split, budget="mixed", a_bits=8, layers=layers, plan=plan)


@pytest.fixture(scope="module")
def net() -> TinySR:
    return TinySR().eval()


@pytest.fixture(scope="module")
def float_model(net: TinySR) -> onnx.ModelProto:
    return export_float_onnx(net, scale=2)


@pytest.fixture(scope="module")
def lr() -> np.ndarray:
    return torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)).numpy()


PLAN = {
    "head": "int8",
    "body.0.c1": "split",
    "body.0.c2": "fp16",
    "body.1.c1": "int8",
    "body.1.c2": "split",
    "up.0": "int8",
    "tail": "int8",
}


def test_each_layer_gets_its_form(net, float_model, lr) -> None:
    recipe = _mixed(net, PLAN)
    assert default_lowering(recipe) == "mixed"
    model = lower("mixed", float_model, recipe)
    ops = Counter(n.op_type for n in model.graph.node)
    convs = len(LAYERS) - 1  # the ConvTranspose tail is not a Conv
    assert ops["Conv"] == convs + 2  # the two split layers run a second (outlier) conv
    producers = {o: n for n in model.graph.node for o in n.output}
    float_inputs = [
        n.name
        for n in model.graph.node
        if n.op_type in ("Conv", "ConvTranspose")
        and (n.input[0] not in producers or producers[n.input[0]].op_type != "DequantizeLinear")
    ]
    assert len(float_inputs) == 1  # the fp16 layer alone keeps a float input
    # same numbers as the float emulation of the same recipe (fakequant skips the fp16 layer too)
    ref = run_ort(lower("fakequant", float_model, recipe), lr)
    np.testing.assert_allclose(run_ort(model, lr), ref, atol=2e-5)
    assert np.abs(ref - run_ort(float_model, lr)).max() > 1e-4


def test_mixed_rejects_other_budgets(net, float_model) -> None:
    with pytest.raises(ExportError, match=r"mixed: lowers recipes of the 'mixed' budget.*'split' budget"):
        lower("mixed", float_model, make_recipe(net, "split"))


def test_shift_fold_is_exact_zero_padding_included() -> None:
    """Dyadic weights, biases and inputs: every float sum is exact, so any difference is a formula error."""
    net = TinySR().eval()
    rng = np.random.default_rng(0)
    with torch.no_grad():
        net.head.weight.copy_(torch.tensor(rng.integers(-16, 17, size=net.head.weight.shape) / 16.0))
        net.head.bias.copy_(torch.tensor(rng.integers(-8, 9, size=net.head.bias.shape) / 8.0))
    float_model = export_float_onnx(net, scale=2)
    base = make_recipe(net, "uniform")
    head = base.layers["head"]
    weight = WeightQuant(8, tuple(f32(1 / 16) for _ in head.weight.scale), 0)
    act = UniformAct(bits=8, scale=f32(1 / 64), zero_point=-100)  # x_hat in [-28/64, 227/64]
    recipe = replace(
        base, budget="mixed", layers={"head": LayerRecipe("conv2d", weight, act)}, plan={"head": "int8"}
    )
    x = (rng.integers(0, 256, size=(1, 3, 12, 12)) / 64.0).astype(np.float32)  # on the grid, some clipped
    folded = lower("mixed", float_model, recipe)
    ops = Counter(n.op_type for n in folded.graph.node)
    assert ops["Pad"] == 1 and ops["Sub"] >= 1
    head_conv = next(n for n in folded.graph.node if n.op_type == "Conv")
    assert all(v == 0 for a in head_conv.attribute if a.name == "pads" for v in a.ints)
    zps = [numpy_helper.to_array(t) for t in folded.graph.initializer if t.name.endswith("input_zero_point")]
    assert all(z == 0 for z in zps)  # TensorRT's Q/DQ: zero point 0 only
    reference = lower("fakequant", float_model, recipe)  # x_hat = s (q - z), then the zero-padded conv
    np.testing.assert_array_equal(run_ort(folded, x).view(np.int32), run_ort(reference, x).view(np.int32))
    # the bias term alone: b + c * sum(W)
    w = np.ones((2, 1, 3, 3), np.float32)
    np.testing.assert_array_equal(
        shift_fold_bias(w, np.array([1.0, -1.0], np.float32), np.float32(0.5)),
        np.array([5.5, 3.5], np.float32),
    )


def test_ort_cpu_form_of_a_mixed_plan(net, float_model, lr) -> None:
    shifted = {"head": UniformAct(bits=8, scale=f32(1 / 255), zero_point=-128)}  # [0, 1] exactly
    recipe = _mixed(net, PLAN, shifted)
    trt = lower("mixed", float_model, recipe)
    cpu = lower_for_ort_cpu("mixed", float_model, recipe, LoweringOptions(), [lr])
    ops = Counter(n.op_type for n in cpu.graph.node)
    assert ops["Pad"] == 0  # QLinearConv pads with the zero point itself
    inits = {t.name: t for t in cpu.graph.initializer}
    producers = {o: n for n in cpu.graph.node for o in n.output}
    head_zp = None
    for conv in (n for n in cpu.graph.node if n.op_type == "Conv"):
        dq = producers.get(conv.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        zp = inits[dq.input[2]]
        assert zp.data_type == TensorProto.UINT8
        if producers[dq.input[0]].input[0] == "lr":
            head_zp = int(numpy_helper.to_array(zp))
    assert head_zp == 0  # 128 + z with z = -128: the image's uint8 lattice
    out, ref = run_ort(cpu, lr), run_ort(trt, lr)
    assert np.abs(out - ref).max() < 0.05 and np.abs(out - ref).mean() < 5e-3
