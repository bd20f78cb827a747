"""load_simulated_model: checkpoint identity check, recipe applied, eval mode (model zoo stubbed)."""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import calib.models
from calib.quantizers import DualRegionActQuantizer, QuantLayer, WeightQuantizer, recipe_layers, wrap_model
from calib.simulate import load_simulated_model
from drq.errors import RecipeError
from drq.recipe import CalibrationInfo, ModelIdentity, Recipe

SHA = "ab" * 32


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1)).train()


def _recipe(checkpoint: str = "w.pth", sha: str = SHA) -> tuple[Recipe, nn.Module]:
    model = _net()
    layers = wrap_model(model)
    for layer in layers.values():
        layer.w_quant = WeightQuantizer(4, layer.layer.weight.detach().abs().amax(dim=(1, 2, 3)) / 7, 0)
        layer.a_quant = DualRegionActQuantizer("b-bit", 4, -0.5, 0.3, 1.2)
    recipe = Recipe(
        model=ModelIdentity(arch="tiny", scale=1, checkpoint_sha256=sha, checkpoint=checkpoint),
        method="drq",
        w_bits=4,
        a_bits=4,
        budget="b-bit",
        weight_mode="per-channel",
        calibration=CalibrationInfo(images=1, crop=8, seed=0),
        layers=recipe_layers(layers),
    )
    return recipe, model


@pytest.fixture
def zoo(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, str]]:
    calls: list[tuple[str, int, str]] = []

    def load_pretrained(arch: str, scale: int, weights_path: str) -> types.SimpleNamespace:
        calls.append((arch, scale, str(weights_path)))
        return types.SimpleNamespace(model=_net(), spec=None, scale=scale, checkpoint_sha256=SHA)

    monkeypatch.setattr(calib.models, "load_pretrained", load_pretrained, raising=False)
    return calls


def test_simulated_model_reproduces_the_calibrated_forward(zoo: list) -> None:
    recipe, calibrated = _recipe()
    model = load_simulated_model(recipe)
    assert zoo == [("tiny", 1, "w.pth")]
    assert not model.training and isinstance(model[0], QuantLayer) and isinstance(model[2], QuantLayer)
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert np.array_equal(model(x).numpy().view(np.uint32), calibrated.eval()(x).numpy().view(np.uint32))


def test_weights_argument_overrides_the_recipe_path(zoo: list, tmp_path: Path) -> None:
    recipe, _ = _recipe()
    load_simulated_model(recipe, tmp_path / "other.pth")
    assert zoo[-1][2] == str(tmp_path / "other.pth")


def test_checkpoint_hash_mismatch_is_a_recipe_error(zoo: list) -> None:
    recipe, _ = _recipe(sha="cd" * 32)
    with pytest.raises(
        RecipeError,
        match=r"^w\.pth: checkpoint sha256 differs from the recipe's "
        r"\(abababababab\.\.\. vs cdcdcdcdcdcd\.\.\.\)$",
    ):
        load_simulated_model(recipe)


@pytest.mark.shared_data
def test_another_checkpoint_is_refused_by_hash_before_loading(shared_dir: Path, zoo: list) -> None:
    recipe, _ = _recipe(checkpoint=str(shared_dir / "sr_weights" / "imdn_x3.pth"))
    with pytest.raises(RecipeError, match=r"imdn_x3\.pth: checkpoint sha256 differs from the recipe's \("):
        load_simulated_model(recipe)
    assert zoo == []  # refused before the model was built


def test_no_checkpoint_path_is_a_recipe_error(zoo: list) -> None:
    recipe, _ = _recipe(checkpoint="")
    with pytest.raises(RecipeError, match="model.checkpoint: the recipe records no checkpoint path"):
        load_simulated_model(recipe)
    assert zoo == []


@pytest.mark.shared_data
def test_simulated_imdn_from_a_recipe(shared_dir: Path, tmp_path: Path) -> None:
    """Real checkpoint: recipe -> JSON -> load_simulated_model reproduces the calibrated model bit for bit."""
    load_pretrained = calib.models.load_pretrained
    from calib.quantizers import UniformActQuantizer, output_channel_axis
    from drq.recipe import load_recipe, save_recipe

    weights = shared_dir / "sr_weights" / "imdn_x4.pth"
    loaded = load_pretrained("imdn", 4, weights)
    model = loaded.model.eval()
    torch.manual_seed(0)
    x = torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        fp = model(x)
    layers = wrap_model(model)
    amax: dict[str, float] = {}

    def observe(t: torch.Tensor, name: str) -> None:
        amax[name] = max(amax.get(name, 0.0), float(t.abs().max()))

    for name, layer in layers.items():
        layer.input_hook = lambda t, _n=name: observe(t, _n)
    with torch.no_grad():
        model(x)
    for name, layer in layers.items():
        layer.input_hook = None
        w = layer.layer.weight.detach()
        axis = output_channel_axis(layer.layer)
        reduce = [d for d in range(w.dim()) if d != axis]
        layer.w_quant = WeightQuantizer(8, w.abs().amax(dim=reduce).clamp(min=1e-8) / 127, axis)
        layer.a_quant = UniformActQuantizer(8, max(amax[name], 1e-6) / 127)
    with torch.no_grad():
        calibrated = model(x)
    recipe = Recipe(
        model=ModelIdentity(
            arch="imdn", scale=4, checkpoint_sha256=loaded.checkpoint_sha256, checkpoint=str(weights)
        ),
        method="minmax",
        w_bits=8,
        a_bits=8,
        budget="uniform",
        weight_mode="per-channel",
        calibration=CalibrationInfo(images=1, crop=24, seed=0),
        layers=recipe_layers(layers),
    )
    simulated = load_simulated_model(load_recipe(save_recipe(recipe, tmp_path / "r.json")))
    with torch.no_grad():
        got = simulated(x)
    assert np.array_equal(got.numpy().view(np.uint32), calibrated.numpy().view(np.uint32))
    mse = float(((got.clamp(0, 1) - fp.clamp(0, 1)) ** 2).mean())
    assert 10 * np.log10(1.0 / mse) > 30.0  # W8A8 stays close to FP
