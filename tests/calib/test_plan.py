"""The mixed-plan search: cost model, int8 variants, proxy, and the plan it writes into the recipe."""

from __future__ import annotations

import math

import pytest
import torch

from calib.calibrate import QuantizeConfig, quantize
from calib.errors import CalibError
from calib.plan import (
    LayerCost,
    PlanConfig,
    _InputStats,
    layer_costs,
    make_plan,
    plan_totals,
    predicted_drop_db,
    shifted_int8,
)
from calib.quantizers import apply_recipe, quant_layers
from drq.recipe import ModelIdentity, UniformAct, recipe_from_dict
from tests.calib.nets import TinyShuffle, tiny_batches


def _split_model():
    torch.manual_seed(0)
    model = TinyShuffle()
    config = QuantizeConfig(method="drq", budget="split", w_bits=8, a_bits=8, probe_size=16)
    recipe, _ = quantize(model, ModelIdentity("tiny", 2, ""), tiny_batches(), config)
    layers = quant_layers(model)
    return model, {n: layers[n] for n in recipe.layers}, recipe


def _held_out() -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(7))


def test_cost_model_counts_the_split_conv_twice() -> None:
    cost = LayerCost(macs=1000, in_elems=10, out_elems=20, weight_elems=5)
    assert cost.of("int8") == {"int8_macs": 1000, "fp16_macs": 0, "bytes": 15 + 40}
    assert cost.of("split") == {"int8_macs": 2000, "fp16_macs": 0, "bytes": 30 + 40}
    assert cost.of("fp16") == {"int8_macs": 0, "fp16_macs": 1000, "bytes": 30 + 40}
    costs = {"a": cost, "b": LayerCost(3000, 1, 1, 1)}
    totals = plan_totals({"a": "split", "b": "fp16"}, costs, fp16_mac_cost=2.0)
    assert totals["int8_macs"] == 2000 and totals["fp16_macs"] == 3000
    assert totals["vs_int8"] == pytest.approx((2000 + 2 * 3000) / 4000)


def test_layer_costs_are_the_conv_macs() -> None:
    model, layers, _ = _split_model()
    costs = layer_costs(model, layers, lr_size=16)
    assert costs["head"].macs == 8 * 3 * 9 * 16 * 16  # Cout * Cin * k * k * H * W
    assert costs["tail"].macs == 3 * 8 * 9 * 32 * 32  # the HR tail runs at 2x


def test_shifted_grid_for_inputs_bounded_below() -> None:
    stats = _InputStats()
    stats.collect(torch.arange(256, dtype=torch.float32) / 255.0)  # the image: uint8 / 255
    q = shifted_int8(stats, minmax=True)
    assert q is not None and q.zero_point == -128 and q.scale.item() == pytest.approx(1 / 255)
    x = torch.arange(256, dtype=torch.float32) / 255.0
    assert torch.allclose(q(x), x, atol=1e-6)  # the uint8 lattice: lossless
    signed = _InputStats()
    signed.collect(torch.linspace(-1.0, 1.0, 101))
    assert shifted_int8(signed) is None  # not bounded below: stays symmetric


def test_predicted_drop_is_the_additive_noise_model() -> None:
    e_fp = 255.0**2 * 10 ** (-30 / 10)
    assert predicted_drop_db(e_fp, 30.0) == pytest.approx(10 * math.log10(2))
    assert predicted_drop_db(0.0, 30.0) == 0.0


@pytest.mark.parametrize("max_drop", [1e3, 1e-9])
def test_plan_meets_a_loose_target_with_int8_and_upgrades_for_a_tight_one(max_drop: float) -> None:
    model, layers, split_recipe = _split_model()
    result = make_plan(
        model, layers, split_recipe, tiny_batches(), _held_out(), PlanConfig(max_drop_db=max_drop)
    )
    recipe, report = result.recipe, result.report
    assert recipe.budget == "mixed" and list(recipe.plan) == list(split_recipe.layers)
    assert recipe_from_dict(recipe.to_dict()) == recipe  # a valid, loadable recipe
    proxy = report["proxy"]
    if max_drop > 1:
        assert set(recipe.plan.values()) == {"int8"} and report["target_met"]
        assert all(isinstance(layer.act, UniformAct) for layer in recipe.layers.values())
    else:
        assert set(recipe.plan.values()) != {"int8"}
        assert proxy["plan"]["mse"] < proxy["all_int8_best_variant"]["mse"]
    assert result.cost_table.splitlines()[-1].startswith("  total:")
    # the recipe reproduces the model the search left behind (fp16 layers in float)
    x = _held_out()
    with torch.no_grad():
        expected = model(x)
        torch.manual_seed(0)
        fresh = TinyShuffle()
        apply_recipe(fresh, recipe)
        assert torch.equal(fresh(x), expected)


def test_plan_needs_split_quantizers() -> None:
    torch.manual_seed(0)
    model = TinyShuffle()
    config = QuantizeConfig(method="minmax", budget="uniform", w_bits=8, a_bits=8, probe_size=16)
    recipe, _ = quantize(model, ModelIdentity("tiny", 2, ""), tiny_batches(), config)
    layers = quant_layers(model)
    with pytest.raises(CalibError, match="has no split quantizer to start from"):
        make_plan(model, layers, recipe, tiny_batches(), _held_out(), PlanConfig())
