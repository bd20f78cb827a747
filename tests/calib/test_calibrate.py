"""quantize() on tiny nets: every method/budget gives a valid recipe, bad combos fail, runs repeat exactly."""

from __future__ import annotations

import copy

import pytest
import torch

from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.errors import CalibError
from calib.quantizers import apply_recipe
from drq.recipe import DualRegionAct, ModelIdentity, UniformAct, recipe_from_dict
from tests.calib.nets import TinyShuffle, tiny_batches

COMBOS = [
    ("minmax", "uniform"),
    ("percentile", "uniform"),
    ("mse", "uniform"),
    ("entropy", "uniform"),
    ("drq", "paper"),
    ("drq", "b-bit"),
    ("drq", "split"),
    ("drq+vft", "split"),
    ("drq+saft", "paper"),
]


def _run(method: str, budget: str, **kw):
    torch.manual_seed(0)
    model = TinyShuffle()
    fp = copy.deepcopy(model)
    config = QuantizeConfig(method=method, budget=budget, epochs=kw.pop("epochs", 1), probe_size=16, **kw)
    recipe, stats = quantize(model, ModelIdentity("tiny", 2, ""), tiny_batches(), config)
    return fp, model, recipe, stats


@pytest.mark.parametrize("method, budget", COMBOS)
def test_every_combo_gives_a_valid_recipe_that_reloads_exactly(method, budget):
    fp, model, recipe, stats = _run(method, budget)
    again = recipe_from_dict(recipe.to_dict())
    assert again == recipe
    assert list(recipe.layers) == ["head", "body.0", "body.2", "fuse", "up", "tail"]
    assert stats.layer_bits == {"head": 8, "body.0": 4, "body.2": 4, "fuse": 4, "up": 8, "tail": 8}
    kind = UniformAct if budget == "uniform" else DualRegionAct
    assert all(isinstance(layer.act, kind) for layer in recipe.layers.values())
    assert recipe.layers["body.0"].act.bits == 4 and recipe.layers["up"].act.bits == 8
    assert recipe.layers["body.0"].weight.bits == 4 and len(recipe.layers["body.0"].weight.scale) == 8
    # The recipe alone rebuilds the quantized model's forward bit for bit.
    x = tiny_batches(1, seed=9)[0]
    rebuilt = copy.deepcopy(fp)
    apply_recipe(rebuilt, recipe)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
        # and quantization changed something, but not everything
        err = float((model(x) - fp(x)).abs().mean())
    assert 0 < err < 0.1


def test_drq_body_relu_input_is_bounded_below():
    _, _, recipe, _ = _run("drq", "paper")
    act = recipe.layers["body.2"].act  # input of body.2 is a ReLU output
    assert act.lower == 0.0 and act.bounded_below
    assert act.outlier_channels is not None


def test_breakpoint_searches_move_split_breakpoints_and_bbit_formats():
    x = tiny_batches(1, seed=9)[0]
    for budget in ("split", "b-bit"):
        runs = {init: _run("drq", budget, breakpoint_init=init) for init in ("mse", "percentile")}
        searched, paper = runs["mse"][2], runs["percentile"][2]
        moved = [
            n for n in searched.layers if searched.layers[n].act.breakpoint != paper.layers[n].act.breakpoint
        ]
        assert moved, "the search kept every percentile breakpoint"
        if budget == "b-bit":
            fixed = {
                (a.dense_limit, a.pos_tail_codes, a.neg_tail_codes)
                for a in (l.act for l in paper.layers.values())
            }
            assert fixed == {(2 ** (b - 2) - 1,) * 3 for b in {l.act.bits for l in paper.layers.values()}}
            assert any(
                (a.dense_limit, a.pos_tail_codes, a.neg_tail_codes) != (2 ** (a.bits - 2) - 1,) * 3
                for a in (l.act for l in searched.layers.values())
            ), "the format search kept schema 1's split everywhere"
        fp = runs["mse"][0]
        with torch.no_grad():
            outputs = {init: float(((run[1](x) - fp(x)) ** 2).mean()) for init, run in runs.items()}
        # Per-layer MSE-optimal breakpoints (and b-bit code splits) also give the lower output error here.
        assert outputs["mse"] < outputs["percentile"], budget


def test_all_layers_puts_every_layer_at_b_bits():
    _, _, recipe, stats = _run("minmax", "uniform", all_layers=True, w_bits=6, a_bits=6)
    assert set(stats.layer_bits.values()) == {6}
    assert {layer.weight.bits for layer in recipe.layers.values()} == {6}


def test_paper_weight_mode_is_per_tensor():
    _, _, recipe, _ = _run("drq", "split", weight_mode="paper")
    assert all(layer.weight.axis is None and len(layer.weight.scale) == 1 for layer in recipe.layers.values())


def test_same_seed_same_recipe():
    _, _, first, _ = _run("drq+saft", "split", epochs=2)
    _, _, second, _ = _run("drq+saft", "split", epochs=2)
    assert first.layers == second.layers


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            {"method": "minmax", "budget": "split"},
            "budget: method 'minmax' needs the 'uniform' budget, got 'split'",
        ),
        (
            {"method": "drq", "budget": "uniform"},
            "budget: method 'drq' needs one of paper, b-bit, split, got 'uniform'",
        ),
        (
            {"method": "drq", "budget": "b-bit", "a_bits": 2},
            "a_bits: the b-bit budget needs at least 3 bits, got 2",
        ),
        ({"method": "nope"}, "method: must be one of"),
        ({"breakpoint_init": "max"}, "breakpoint_init: must be one of mse, percentile, got 'max'"),
        ({"w_bits": 9}, "w_bits: must be an integer 2..8, got 9"),
        ({"method": "drq+saft", "epochs": 0}, "epochs: must be a positive integer, got 0"),
    ],
)
def test_invalid_configs(kwargs, message):
    with pytest.raises(CalibError) as info:
        QuantizeConfig(**kwargs)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_no_calibration_data_is_an_error():
    with pytest.raises(CalibError, match="no batches"):
        quantize(
            TinyShuffle(), ModelIdentity("tiny", 2, ""), [], QuantizeConfig(method="drq", budget="split")
        )
    with pytest.raises(CalibError, match="no crops"):
        make_batches([], 2)


def test_make_batches_keeps_order():
    crops = [torch.full((3, 4, 4), float(i)) for i in range(5)]
    batches = make_batches(crops, 2)
    assert [b.shape[0] for b in batches] == [2, 2, 1]
    assert [float(b[i, 0, 0, 0]) for b in batches for i in range(b.shape[0])] == [0, 1, 2, 3, 4]


def test_model_identity_travels_as_one_dataclass():
    identity = ModelIdentity("tiny", 2, "", checkpoint="weights/tiny.pth")
    model = TinyShuffle()
    recipe, _ = quantize(model, identity, tiny_batches(), QuantizeConfig(method="minmax", budget="uniform"))
    assert recipe.model == identity
    with pytest.raises(CalibError, match="identity: expected a drq.recipe.ModelIdentity"):
        quantize(TinyShuffle(), "tiny", tiny_batches(), QuantizeConfig(method="minmax", budget="uniform"))  # type: ignore[arg-type]
