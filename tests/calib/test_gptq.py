"""GPTQ weight rounding: the column algorithm, its error bookkeeping, and the method end to end (codes in
the recipe, lower layer errors than nearest rounding, the simulation reproduced from the recipe)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.errors import CalibError
from calib.gptq import GPTQConfig, LayerStatistics, gptq_codes, input_columns, output_error, target_weight
from calib.quantizers import QuantLayer
from drq.recipe import ModelIdentity
from tests.calib.nets import TinyShuffle, TinyTranspose, assert_recipe_reproduces

IDENTITY = ModelIdentity("tiny", 2, "")


def _crops(n: int = 4) -> list[np.ndarray]:
    return [np.random.default_rng(i).random((3, 16, 16), dtype=np.float32) for i in range(n)]


def _config(method: str, **kw) -> QuantizeConfig:
    base = dict(method=method, budget="split", w_bits=3, a_bits=8, all_layers=True, crop=16, probe_size=16)
    return QuantizeConfig(**{**base, "gptq_batches": 2, "epochs": 1, **kw})


def _problem(seed: int = 0, rows: int = 400, c: int = 6, k: int = 10) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g, dtype=torch.float64)
    x = torch.randn(rows, k, generator=g, dtype=torch.float64) @ mix  # correlated inputs
    w = torch.randn(c, k, generator=g, dtype=torch.float64)
    step = w.abs().amax(1) / 3
    return x, w, step


def test_uncorrelated_inputs_give_nearest_rounding() -> None:
    _, w, step = _problem()
    codes = gptq_codes(w, step, 3, torch.eye(10, dtype=torch.float64) * 7.0, GPTQConfig())
    assert torch.equal(codes, torch.clamp(torch.round(w / step[:, None]), -3, 3))


def test_codes_lower_the_output_error_and_do_not_depend_on_the_block_size() -> None:
    x, w, step = _problem()
    stats = LayerStatistics(x.T @ x, x.shape[0])
    codes = gptq_codes(w, step, 3, stats.quantized, GPTQConfig(block=128))
    assert torch.equal(codes, gptq_codes(w, step, 3, stats.quantized, GPTQConfig(block=3)))
    assert torch.equal(codes, codes.round()) and codes.abs().max() <= 3
    nearest = torch.clamp(torch.round(w / step[:, None]), -3, 3)
    assert output_error(stats, w, codes * step[:, None]) < 0.8 * output_error(
        stats, w, nearest * step[:, None]
    )


def test_output_error_is_the_measured_mean_squared_output_error() -> None:
    x, w, step = _problem()
    xq = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    w_hat = torch.round(w / step[:, None]) * step[:, None]
    plain = LayerStatistics(xq.T @ xq, x.shape[0])
    fp = LayerStatistics(xq.T @ xq, x.shape[0], cross=x.T @ xq, fp=x.T @ x)
    n = x.shape[0]
    assert output_error(plain, w, w_hat) == pytest.approx(float(((xq @ (w - w_hat).T) ** 2).sum()) / n)
    assert output_error(fp, w, w_hat) == pytest.approx(float(((x @ w.T - xq @ w_hat.T) ** 2).sum()) / n)


def test_fp_target_is_the_least_squares_weight_on_the_quantized_input() -> None:
    x, w, _ = _problem()
    xq = torch.round(x * 4) / 4  # the input the quantized model feeds the layer
    fp = LayerStatistics(xq.T @ xq, x.shape[0], cross=x.T @ xq, fp=x.T @ x)
    best = target_weight(fp, w, damp=1e-12)
    solved = torch.linalg.lstsq(xq, x @ w.T).solution.T
    torch.testing.assert_close(best, solved, rtol=1e-6, atol=1e-9)
    assert torch.equal(target_weight(LayerStatistics(fp.quantized, fp.rows), w, 0.01), w)


def test_input_columns_follow_the_weight_layout() -> None:
    conv = torch.nn.Conv2d(3, 5, 3, padding=1, stride=2, bias=False)
    layer = QuantLayer(conv)
    x = torch.randn(2, 3, 9, 7)
    cols = input_columns(layer, x)
    expected = conv(x).permute(0, 2, 3, 1).reshape(-1, 5)
    torch.testing.assert_close(cols @ conv.weight.reshape(5, -1).T, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("target", ["fp", "quantized"])
def test_gptq_lowers_every_layer_error_and_its_codes_travel_in_the_recipe(target: str) -> None:
    torch.manual_seed(0)
    net = TinyShuffle().eval()
    work = copy.deepcopy(net)
    recipe, stats = quantize(
        work, IDENTITY, make_batches(_crops(), 2), _config("drq+gptq", gptq_target=target)
    )
    logs = stats.to_dict()["gptq"]["layers"]
    assert [log["layer"] for log in logs] == ["head", "body.0", "body.2", "fuse", "up", "tail"]
    assert all(log["err_gptq"] <= log["err_nearest"] for log in logs)
    assert sum(log["err_nearest"] - log["err_gptq"] for log in logs) > 0
    assert any(log["changed"] > 0 for log in logs)
    assert_recipe_reproduces(net, work, recipe)


def test_gptq_then_saft_keeps_the_codes_and_trains_the_scales() -> None:
    torch.manual_seed(0)
    net = TinyShuffle().eval()
    rounded, _ = quantize(copy.deepcopy(net), IDENTITY, make_batches(_crops(), 2), _config("drq+gptq"))
    tuned, stats = quantize(copy.deepcopy(net), IDENTITY, make_batches(_crops(), 2), _config("drq+gptq+saft"))
    assert stats.finetune is not None and stats.finetune.steps == 2
    for name, layer in tuned.layers.items():
        assert layer.weight.codes == rounded.layers[name].weight.codes
    assert any(layer.weight.scale != rounded.layers[n].weight.scale for n, layer in tuned.layers.items())


def test_transposed_convolutions_keep_nearest_rounding() -> None:
    net = TinyTranspose().eval()
    crops = [np.random.default_rng(i).random((3, 12, 12), dtype=np.float32) for i in range(2)]
    recipe, stats = quantize(
        copy.deepcopy(net), IDENTITY, make_batches(crops, 2), _config("drq+gptq", crop=12)
    )
    assert stats.to_dict()["gptq"]["skipped"] == ["up"]
    assert not recipe.layers["up"].weight.codes and recipe.layers["mid"].weight.codes


@pytest.mark.parametrize(
    ("kw", "message"),
    [({"batches": 0}, "gptq batches"), ({"damp": 0.0}, "gptq damp"), ({"target": "x"}, "gptq target")],
)
def test_config_is_validated(kw: dict, message: str) -> None:
    with pytest.raises(CalibError, match=message):
        GPTQConfig(**kw)


def test_measuring_inside_blocks_gives_the_codes_of_whole_model_passes(monkeypatch) -> None:
    import calib.gptq as gptq_module

    net = TinyShuffle().eval()  # its body is a Sequential: measured element by element
    blockwise, _ = quantize(copy.deepcopy(net), IDENTITY, make_batches(_crops(), 2), _config("drq+gptq"))
    monkeypatch.setattr(
        gptq_module, "_block_inputs", lambda model, _b, data, fp: (model, data, data if fp else None)
    )
    whole, _ = quantize(copy.deepcopy(net), IDENTITY, make_batches(_crops(), 2), _config("drq+gptq"))
    assert blockwise.layers == whole.layers


def test_mse_gptq_is_the_mse_baseline_with_gptq_codes() -> None:
    net = TinyShuffle().eval()
    kw = dict(budget="uniform", w_bits=3, a_bits=4)
    batches = make_batches(_crops(), 2)
    base, _ = quantize(copy.deepcopy(net), IDENTITY, batches, _config("mse", **kw))
    rounded, stats = quantize(copy.deepcopy(net), IDENTITY, batches, _config("mse+gptq", **kw))
    assert all(rounded.layers[n].act == layer.act for n, layer in base.layers.items())  # same activations
    assert all(layer.weight.codes for layer in rounded.layers.values()) and stats.to_dict()["gptq"]["layers"]
    assert all(not layer.weight.codes for layer in base.layers.values())
    with pytest.raises(CalibError, match="needs the 'uniform' budget"):
        _config("mse+gptq", budget="split")
