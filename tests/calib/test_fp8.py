"""FP8 (E4M3) quantizers, the fp8 method's calibration and layer policy, and the fp8 recipe fields."""

from __future__ import annotations

import copy
import json

import ml_dtypes
import numpy as np
import pytest
import torch

from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.errors import CalibError
from calib.policy import fp8_policy, probe_layers
from calib.quantize_command import _parser, make_config
from calib.quantizers import FP8ActQuantizer, FP8WeightQuantizer, apply_recipe
from calib.quantizers.fp8 import fake_e4m3
from drq.errors import RecipeError
from drq.recipe import FP8Act, ModelIdentity, WeightQuant, recipe_from_dict
from tests.calib.nets import TinyShuffle, TinyTranspose


def _special_values() -> np.ndarray:
    """Every E4M3 value, the midpoints between neighbours (ties), their float32 neighbours, and
    values beyond the range."""
    codes = np.arange(256, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    finite = np.unique(codes[np.isfinite(codes)])
    mids = (finite[:-1] + finite[1:]) / 2
    near = np.concatenate([np.nextafter(mids, np.inf), np.nextafter(mids, -np.inf)])
    big = np.array([448.0, 449.0, 463.9, 464.0, 500.0, 1e9, -1e9, -464.0, 2.0**-10, -(2.0**-10)], np.float32)
    return np.concatenate([finite, mids, near, big]).astype(np.float32)


def test_fake_e4m3_matches_ml_dtypes_bit_for_bit() -> None:
    x = _special_values()
    ours = fake_e4m3(torch.from_numpy(x), torch.tensor(1.0)).numpy()
    # ml_dtypes' cast does not saturate (beyond 464 it gives NaN), so clamp first as the quantizer does.
    ref = np.clip(x, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    np.testing.assert_array_equal(ours.view(np.int32), ref.view(np.int32))
    assert ours.max() == 448.0 and ours.min() == -448.0
    # Ties go to the even code: 0.5 * (1 + 1.125) = 1.0625 rounds down to 1.0, 1.1875 up to 1.25.
    assert fake_e4m3(torch.tensor([1.0625, 1.1875]), torch.tensor(1.0)).tolist() == [1.0, 1.25]


def test_fake_e4m3_with_scale_divides_then_casts_then_multiplies() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(5000) * 30).astype(np.float32)
    s = np.float32(0.0371)
    ours = fake_e4m3(torch.from_numpy(x), torch.tensor(s)).numpy()
    ref = (np.clip(x / s, -448, 448).astype(ml_dtypes.float8_e4m3fn).astype(np.float32) * s).astype(
        np.float32
    )
    np.testing.assert_array_equal(ours.view(np.int32), ref.view(np.int32))


def test_fp8_quantizers_round_trip_their_recipe_entries() -> None:
    act = FP8ActQuantizer.from_amax(3.5)
    assert act.to_recipe() == FP8Act(scale=float(np.float32(3.5 / 448)))
    assert FP8ActQuantizer.from_recipe(act.to_recipe()).scale.item() == act.scale.item()
    weight = torch.tensor([[[[1.0, -2.0]]], [[[0.0, 0.5]]]])
    wq = FP8WeightQuantizer.from_weight(weight, axis=0)
    entry = wq.to_recipe()
    assert entry.format == "e4m3fn" and entry.bits == 8 and entry.axis == 0
    assert entry.scale == (float(np.float32(2.0 / 448)), float(np.float32(0.5 / 448)))
    # Each channel's largest |w| lands exactly on the largest code.
    assert torch.equal(wq(weight), weight)
    assert torch.equal(FP8WeightQuantizer.from_recipe(entry)(weight), wq(weight))


def test_fp8_recipe_fields_are_validated() -> None:
    with pytest.raises(RecipeError, match="bits: e4m3fn weights are 8 bits, got 4"):
        WeightQuant(bits=4, scale=(1.0,), format="e4m3fn")
    with pytest.raises(RecipeError, match="format: must be one of int, e4m3fn"):
        WeightQuant(bits=8, scale=(1.0,), format="e5m2")
    with pytest.raises(RecipeError, match="scale: must be > 0"):
        FP8Act(scale=0.0)


def test_config_ties_the_fp8_method_to_the_fp8_budget_and_8_bits() -> None:
    with pytest.raises(CalibError, match="the fp8 method and the fp8 budget go together"):
        QuantizeConfig(method="fp8", w_bits=8, a_bits=8, budget="uniform")
    with pytest.raises(CalibError, match="method 'minmax' needs the 'uniform' budget, got 'fp8'"):
        QuantizeConfig(method="minmax", w_bits=8, a_bits=8, budget="fp8")
    with pytest.raises(CalibError, match="method 'drq' needs one of paper, b-bit, split, got 'fp8'"):
        QuantizeConfig(method="drq", w_bits=8, a_bits=8, budget="fp8")
    with pytest.raises(CalibError, match="fp8 is 8 bits, got W4A8"):
        QuantizeConfig(method="fp8", w_bits=4, a_bits=8, budget="fp8")


def test_command_line_fp8_defaults_to_the_fp8_budget_at_8_bits(tmp_path) -> None:
    config = make_config(_parser().parse_args([*_args(tmp_path), "--method", "fp8"]))
    assert (config.method, config.budget, config.w_bits, config.a_bits) == ("fp8", "fp8", 8, 8)
    assert make_config(_parser().parse_args([*_args(tmp_path), "--method", "minmax"])).w_bits == 4


def _args(tmp_path) -> list[str]:
    return ["--arch", "imdn", "--weights", "w.pth", "--scale", "4", "--calib", str(tmp_path), "-o", "r.json"]


def _crops(count: int = 4, size: int = 16) -> list[np.ndarray]:
    return [np.random.default_rng(i).random((3, size, size), dtype=np.float32) * 1.5 for i in range(count)]


@pytest.mark.parametrize("all_layers", [False, True])
def test_fp8_quantize_keeps_head_upsampler_and_tail_in_float_unless_all_layers(all_layers: bool) -> None:
    net = TinyShuffle().eval()
    config = QuantizeConfig(method="fp8", w_bits=8, a_bits=8, budget="fp8", all_layers=all_layers, crop=16)
    recipe, stats = quantize(
        copy.deepcopy(net), ModelIdentity("tiny", 2, ""), make_batches(_crops(), 2), config
    )
    expected = (
        ["head", "body.0", "body.2", "fuse", "up", "tail"] if all_layers else ["body.0", "body.2", "fuse"]
    )
    assert list(recipe.layers) == expected
    assert fp8_policy(probe_layers(net), all_layers) == dict.fromkeys(expected, 8)
    assert recipe.budget == "fp8" and all(layer.act.kind == "fp8" for layer in recipe.layers.values())
    assert all(layer.weight.format == "e4m3fn" for layer in recipe.layers.values())
    assert set(stats.layer_bits.values()) == {8}


def test_fp8_activation_scale_is_the_calibration_max_over_448() -> None:
    net = TinyTranspose().eval()
    batches = make_batches(_crops(), 2)
    config = QuantizeConfig(method="fp8", w_bits=8, a_bits=8, budget="fp8", all_layers=True, crop=16)
    recipe, _ = quantize(copy.deepcopy(net), ModelIdentity("tiny", 2, ""), batches, config)
    seen: dict[str, float] = {}
    hooks = [
        getattr(net, name).register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(
                name, max(seen.get(name, 0.0), float(args[0].abs().max()))
            )
        )
        for name in ("head", "mid", "up")
    ]
    with torch.no_grad():
        for batch in batches:
            net(batch)
    for hook in hooks:
        hook.remove()
    for name, amax in seen.items():
        assert recipe.layers[name].act.scale == float(np.float32(np.float32(amax) / np.float32(448)))
    assert recipe.layers["up"].weight.axis == 1  # ConvTranspose2d: output channels on axis 1


def test_fp8_recipe_json_round_trip_rebuilds_the_same_simulation() -> None:
    net = TinyShuffle().eval()
    config = QuantizeConfig(method="fp8", w_bits=8, a_bits=8, budget="fp8", crop=16)
    work = copy.deepcopy(net)
    recipe, _ = quantize(work, ModelIdentity("tiny", 2, ""), make_batches(_crops(), 2), config)
    loaded = recipe_from_dict(json.loads(json.dumps(recipe.to_dict())))
    assert loaded == recipe and loaded.sha256() == recipe.sha256()
    rebuilt = copy.deepcopy(net)
    apply_recipe(rebuilt, loaded)
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), work.eval()(x))
        assert not torch.equal(rebuilt(x), net(x))  # it does quantize
