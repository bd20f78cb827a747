"""SAFT / VFT: the loss falls, only quantizer parameters change, groups cycle by epoch."""

from __future__ import annotations

import copy

import pytest
import torch

from calib.calibrate import QuantizeConfig, quantize
from calib.finetune import FinetuneConfig, finetune, saft_weights, sensitivity_loss
from calib.quantizers import quant_layers
from drq.recipe import ModelIdentity
from tests.calib.nets import TinyShuffle, tiny_batches


def test_saft_weights_are_a_softmax_of_stds():
    w = saft_weights({"a": 0.0, "b": 1.0})
    assert w["a"] + w["b"] == pytest.approx(1.0)
    assert w["b"] / w["a"] == pytest.approx(torch.e)


def test_sensitivity_loss_is_scale_invariant_and_weighted():
    f = torch.rand(2, 3, 4, 4)
    assert float(sensitivity_loss({"a": f}, {"a": 3.0 * f}, {"a": 1.0})) == pytest.approx(0.0, abs=1e-5)
    g = torch.rand(2, 3, 4, 4)
    d = float(sensitivity_loss({"a": f}, {"a": g}, {"a": 1.0}))
    both = float(sensitivity_loss({"a": f, "b": f}, {"a": g, "b": f}, {"a": 3.0, "b": 1.0}))
    assert both == pytest.approx(0.75 * d)


def test_saft_loss_falls_and_only_quantizers_change():
    torch.manual_seed(0)
    model = TinyShuffle()
    batches = tiny_batches(4)
    # Initialise with drq (no finetuning), then finetune for a few epochs by hand.
    quantize(
        model,
        ModelIdentity("tiny", 2, ""),
        batches,
        QuantizeConfig(method="drq", budget="split", probe_size=16, a_bits=3, w_bits=3, all_layers=True),
    )
    layers = quant_layers(model)
    weights_before = {n: l.layer.weight.clone() for n, l in layers.items()}
    scales_before = {n: l.w_quant.scale.detach().clone() for n, l in layers.items()}
    bp_before = {n: float(l.a_quant.breakpoint.detach()) for n, l in layers.items()}
    stats = finetune(model, layers, batches, {n: 1.0 for n in layers}, FinetuneConfig(epochs=6, lr=2e-3))
    losses = [e.loss for e in stats.epochs]
    assert [e.group for e in stats.epochs[:3]] == ["weight_scale", "act_bounds", "breakpoint"]
    assert stats.epochs[1].lr == pytest.approx(2e-3 * 0.9)
    assert losses[-1] < losses[0]
    assert stats.steps == 6 * len(batches)
    for n, l in layers.items():
        assert torch.equal(l.layer.weight, weights_before[n])
    assert any(not torch.equal(l.w_quant.scale.detach(), scales_before[n]) for n, l in layers.items())
    assert any(float(l.a_quant.breakpoint.detach()) != bp_before[n] for n, l in layers.items())
    assert all(l.input_hook is None and l.quant_enabled for l in layers.values())


def test_saft_improves_over_drq_init_on_tiny_net():
    torch.manual_seed(0)
    base = TinyShuffle()
    batches = tiny_batches(4)
    x = tiny_batches(1, seed=7)[0]
    errors = {}
    for method in ("drq", "drq+saft"):
        model = copy.deepcopy(base)
        quantize(
            model,
            ModelIdentity("tiny", 2, ""),
            batches,
            QuantizeConfig(
                method=method,
                budget="split",
                epochs=6,
                lr=2e-3,
                probe_size=16,
                w_bits=3,
                a_bits=3,
                all_layers=True,
            ),
        )
        with torch.no_grad():
            errors[method] = float((model(x) - base(x)).abs().mean())
    assert errors["drq+saft"] < errors["drq"]
