"""Layer wrapping, quantizer-enabled forward, recipes through JSON, and apply_recipe's errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from calib.errors import CalibError
from calib.quantizers import (
    DualRegionActQuantizer,
    QuantLayer,
    UniformActQuantizer,
    WeightQuantizer,
    apply_recipe,
    output_channel_axis,
    quant_layers,
    quantizable_layers,
    recipe_layers,
    set_quant_enabled,
    wrap_model,
)
from drq.errors import RecipeError
from drq.recipe import CalibrationInfo, ModelIdentity, Recipe, load_recipe, save_recipe


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect"), nn.ReLU(), nn.Conv2d(8, 8, 1, groups=2)
        )
        self.up = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1, output_padding=0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.up(self.body(self.head(x)) - 0.1)
        return self.fc(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


NAMES = ["head", "body.0", "body.2", "up", "fc"]


def _model() -> Tiny:
    torch.manual_seed(0)
    return Tiny().eval()


def _input() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.rand(2, 3, 6, 6)


def _quantize_all(layers: dict[str, QuantLayer], budget: str = "b-bit") -> None:
    for layer in layers.values():
        w = layer.layer.weight.detach()
        axis = output_channel_axis(layer.layer)
        amax = w.abs().amax(dim=[d for d in range(w.dim()) if d != axis])
        layer.w_quant = WeightQuantizer(4, amax / 7, axis)
        if budget == "uniform":
            layer.a_quant = UniformActQuantizer(4, 0.05)
        else:
            layer.a_quant = DualRegionActQuantizer(budget, 4, -1.0, 0.2, 1.5)


def _recipe(layers: dict[str, QuantLayer], budget: str) -> Recipe:
    return Recipe(
        model=ModelIdentity(arch="tiny", scale=2, checkpoint_sha256=""),
        method="drq",
        w_bits=4,
        a_bits=4,
        budget=budget,
        weight_mode="per-channel",
        calibration=CalibrationInfo(images=1, crop=6, seed=0),
        layers=recipe_layers(layers),
    )


def test_quantizable_layers_in_registration_order() -> None:
    model = _model()
    found = quantizable_layers(model)
    assert list(found) == NAMES
    assert found["up"] is model.up


def test_wrap_model_replaces_in_place_and_is_idempotent() -> None:
    model = _model()
    original = model.body[0]
    wrapped = wrap_model(model)
    assert list(wrapped) == NAMES
    assert model.body[0] is wrapped["body.0"] and wrapped["body.0"].layer is original
    assert wrapped["up"].op == "conv_transpose2d" and wrapped["fc"].op == "linear"
    assert all(not p.requires_grad for layer in wrapped.values() for p in layer.layer.parameters())
    assert list(quantizable_layers(model)) == NAMES  # names survive wrapping
    again = wrap_model(model, ["head", "up"])
    assert again["head"] is wrapped["head"] and again["up"] is wrapped["up"]
    assert list(quant_layers(model)) == NAMES


def test_wrap_selected_names_only() -> None:
    model = _model()
    wrap_model(model, ["body.2"])
    assert isinstance(model.body[2], QuantLayer) and isinstance(model.head, nn.Conv2d)


def test_wrap_model_errors() -> None:
    with pytest.raises(
        CalibError, match=r"Tiny: no quantizable layer named 'body\.1' \(valid: head, body\.0"
    ):
        wrap_model(_model(), ["body.1"])
    with pytest.raises(CalibError, match="Sequential: no layer to quantize"):
        wrap_model(nn.Sequential(nn.ReLU(), nn.Tanh()))
    with pytest.raises(CalibError, match="no layer to quantize"):
        wrap_model(_model(), [])


def test_fp_forward_is_exact_when_disabled_or_without_quantizers() -> None:
    x = _input()
    model = _model()
    # Wrapping freezes weights, and torch's Linear takes another kernel (other last bits) for frozen
    # weights on N-d input, so the FP reference is taken from the frozen model.
    model.requires_grad_(False)
    with torch.no_grad():
        reference = model(x)
        layers = wrap_model(model)
        assert torch.equal(model(x), reference)  # no quantizers: the same ops
        _quantize_all(layers)
        quantized = model(x)
        set_quant_enabled(model, False)
        assert torch.equal(model(x), reference)
        set_quant_enabled(model, True)
        assert torch.equal(model(x), quantized)
    assert not torch.equal(quantized, reference)
    assert (quantized - reference).abs().max() < 0.5 * reference.abs().max()


def test_quant_layer_computes_op_on_quantized_weight_and_input() -> None:
    model = _model()
    layers = wrap_model(model)
    _quantize_all(layers)
    x = torch.rand(1, 8, 5, 5) * 3 - 1
    up = layers["up"]
    with torch.no_grad():
        expected = F.conv_transpose2d(
            up.a_quant(x), up.w_quant(up.layer.weight), up.layer.bias, stride=2, padding=1
        )
        assert torch.equal(up(x), expected)
        conv = layers["body.0"]
        padded = F.pad(conv.a_quant(x), (1, 1, 1, 1), mode="reflect")
        assert torch.equal(conv(x), F.conv2d(padded, conv.w_quant(conv.layer.weight), conv.layer.bias))


def test_input_hook_sees_raw_inputs() -> None:
    model = _model()
    layers = wrap_model(model)
    _quantize_all(layers)
    seen: list[torch.Tensor] = []
    layers["head"].input_hook = seen.append
    x = _input()
    model(x)
    set_quant_enabled(model, False)
    model(x)
    assert len(seen) == 2 and all(torch.equal(s, x) for s in seen)


def test_only_quantizer_parameters_train() -> None:
    model = _model()
    layers = wrap_model(model)
    _quantize_all(layers)
    model(_input()).square().mean().backward()
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".w_quant." in n or ".a_quant." in n for n in trainable)
    assert all(
        p.grad is not None and torch.isfinite(p.grad).all()
        for n, p in model.named_parameters()
        if p.requires_grad
    )


@pytest.mark.parametrize("budget", ["uniform", "paper", "b-bit", "split"])
def test_recipe_json_round_trip_reproduces_forward(budget: str, tmp_path: Path) -> None:
    x = _input()
    model = _model()
    layers = wrap_model(model)
    _quantize_all(layers, budget)
    with torch.no_grad():
        for layer in layers.values():  # per-layer variety, as after calibration
            layer.w_quant.scale.mul_(1.1)
        expected = model(x)
    path = save_recipe(_recipe(layers, budget), tmp_path / "recipe.json")
    loaded = load_recipe(path)
    assert loaded == _recipe(layers, budget)
    fresh = _model()
    applied = apply_recipe(fresh, loaded)
    assert list(applied) == NAMES
    with torch.no_grad():
        got = fresh(x)
    assert np.array_equal(got.numpy().view(np.uint32), expected.numpy().view(np.uint32))
    assert recipe_layers(applied) == loaded.layers


def test_recipe_layers_needs_both_quantizers() -> None:
    layers = wrap_model(_model())
    with pytest.raises(
        CalibError, match="layer 'head': conv2d layer: both the weight and the input quantizer"
    ):
        recipe_layers(layers)


def _recipe_for_tiny() -> Recipe:
    model = _model()
    layers = wrap_model(model)
    _quantize_all(layers)
    return _recipe(layers, "b-bit")


def test_apply_recipe_missing_layer_is_an_error_and_leaves_the_model_alone() -> None:
    recipe = _recipe_for_tiny()
    model = nn.Sequential()
    model.add_module("head", nn.Conv2d(3, 8, 3, padding=1))
    with pytest.raises(
        RecipeError,
        match=r"layers\['body\.0'\]: the model has no quantizable layer of that name \(valid: head\)",
    ):
        apply_recipe(model, recipe)
    assert isinstance(model.head, nn.Conv2d)


def test_apply_recipe_channel_mismatch() -> None:
    recipe = _recipe_for_tiny()
    model = _model()
    model.head = nn.Conv2d(3, 6, 3, padding=1)
    with pytest.raises(
        RecipeError, match=r"layers\['head'\]\.weight\.scale: 8 scales for 6 channels on axis 0"
    ):
        apply_recipe(model, recipe)
    assert not quant_layers(model)


def test_apply_recipe_op_mismatch() -> None:
    recipe = _recipe_for_tiny()
    model = _model()
    model.fc = nn.Conv2d(4, 3, 1)
    with pytest.raises(
        RecipeError, match=r"layers\['fc'\]\.op: recipe says 'linear' but the model's layer is 'conv2d'"
    ):
        apply_recipe(model, recipe)
