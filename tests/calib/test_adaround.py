"""Learned weight rounding: it lowers each block's reconstruction error, its codes travel in the recipe,
and the fakequant ONNX graph (onnxruntime) reproduces the torch simulation with those codes (also for
GPTQ's codes and re-searched steps)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from calib.adaround import AdaRoundConfig, SoftRounding, adaround
from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.errors import CalibError
from calib.quantizers import WeightQuantizer, apply_recipe, quant_layers
from drq.errors import RecipeError
from drq.recipe import ModelIdentity, WeightQuant, decode_weight_codes, encode_weight_codes
from tests.calib.nets import TinyShuffle, assert_recipe_reproduces

IDENTITY = ModelIdentity("tiny", 2, "")


def _crops(n: int = 4) -> list[np.ndarray]:
    return [np.random.default_rng(i).random((3, 16, 16), dtype=np.float32) for i in range(n)]


def _config(method: str, **kw) -> QuantizeConfig:
    base = dict(method=method, budget="split", w_bits=3, a_bits=8, all_layers=True, crop=16, probe_size=16)
    return QuantizeConfig(**{**base, "ar_iters": 60, "ar_batches": 2, "epochs": 1, **kw})


def test_soft_rounding_starts_at_the_weight_and_ends_on_integer_codes() -> None:
    torch.manual_seed(0)
    w = torch.randn(4, 3, 3, 3) * 0.2
    q = WeightQuantizer(4, torch.full((4,), 0.05), 0)
    soft = SoftRounding(q, w)
    inside = (w / 0.05).abs() < q.qmax - 1
    assert torch.allclose(soft(w)[inside], w[inside], atol=0.05 * 0.12)  # rest clamped to [0.01, 0.99]
    codes = soft.hard_codes()
    assert torch.equal(codes, codes.round()) and codes.abs().max() <= q.qmax
    assert torch.equal(codes, soft.nearest)  # V starts on the nearest side of 0


def test_adaround_lowers_every_block_error_and_flips_some_codes() -> None:
    torch.manual_seed(0)
    net = TinyShuffle().eval()
    recipe, stats = quantize(copy.deepcopy(net), IDENTITY, make_batches(_crops(), 2), _config("drq+adaround"))
    blocks = stats.extra["adaround"]["blocks"]
    assert [b["block"] for b in blocks] == ["head", "body", "fuse", "up", "tail"]
    assert all(b["rec_after"] <= b["rec_before"] for b in blocks)
    assert all(b["kept"] == (b["rec_after"] < b["rec_before"]) for b in blocks)
    assert sum(b["rec_before"] - b["rec_after"] for b in blocks) > 0
    assert any(b["flipped"] > 0 for b in blocks) and all(b["flipped"] == 0 for b in blocks if not b["kept"])
    assert all(layer.weight.codes for layer in recipe.layers.values())


def test_adaround_codes_survive_the_recipe_and_reproduce_the_simulation() -> None:
    net = TinyShuffle().eval()
    work = copy.deepcopy(net)
    recipe, _ = quantize(work, IDENTITY, make_batches(_crops(), 2), _config("drq+adaround+saft"))
    assert_recipe_reproduces(net, work, recipe)


@pytest.mark.parametrize("method", ["drq+adaround", "drq+gptq"])
def test_fakequant_onnx_uses_the_stored_codes(tmp_path, method: str) -> None:
    ort = pytest.importorskip("onnxruntime")
    from engine_builder.export.torch_export import export_float_onnx
    from engine_builder.lowerings.registry import lower

    net = TinyShuffle().eval()
    recipe, _ = quantize(copy.deepcopy(net), IDENTITY, make_batches(_crops(), 2), _config(method))
    model = lower("fakequant", export_float_onnx(net, scale=2), recipe)
    simulated = copy.deepcopy(net)
    apply_recipe(simulated, recipe)
    x = np.random.default_rng(5).random((1, 3, 20, 24), dtype=np.float32)
    with torch.no_grad():
        expected = simulated(torch.from_numpy(x)).numpy()
        nearest = copy.deepcopy(net)
        apply_recipe(nearest, recipe)
        for layer in quant_layers(nearest).values():
            layer.w_quant.codes = None
        other = nearest(torch.from_numpy(x)).numpy()
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    got = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"]).run(
        None, {"lr": x}
    )[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.abs(other - expected).max() > 1e-3  # nearest rounding would be visibly different


def test_codes_are_validated() -> None:
    ok = WeightQuant(bits=3, scale=(0.1,), axis=None, codes=encode_weight_codes(np.array([3, -3, 0])))
    assert decode_weight_codes(ok).tolist() == [3, -3, 0]
    with pytest.raises(RecipeError, match="codes: must be non-empty and within"):
        WeightQuant(bits=3, scale=(0.1,), axis=None, codes=encode_weight_codes(np.array([4])))
    with pytest.raises(RecipeError, match="codes: not base64"):
        WeightQuant(bits=3, scale=(0.1,), axis=None, codes="%%%")
    with pytest.raises(CalibError, match="adaround iters"):
        AdaRoundConfig(iters=0)
    with pytest.raises(CalibError, match="integer weight quantizer"):
        adaround(TinyShuffle(), {"head": SimpleNamespace(w_quant=None)}, [torch.rand(1, 3, 8, 8)])  # type: ignore[dict-item]
