"""A recipe's checkpoint path is relative to the recipe file's folder (older recipes: to where
`drq quantize` ran), so a recipe works from any working directory."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from drq.recipe import (
    ACT_SCALE_BOUNDS,
    CalibrationInfo,
    DualRegionAct,
    LayerRecipe,
    ModelIdentity,
    Recipe,
    RecipeError,
    UniformAct,
    WeightQuant,
    checkpoint_field,
    recipe_checkpoint,
)


def _recipe(checkpoint: str) -> Recipe:
    layer = LayerRecipe(
        op="conv2d", weight=WeightQuant(bits=8, scale=(0.01,), axis=None), act=UniformAct(8, 0.01)
    )
    return Recipe(
        model=ModelIdentity(arch="imdn", scale=4, checkpoint_sha256="", checkpoint=checkpoint),
        method="minmax",
        w_bits=8,
        a_bits=8,
        budget="uniform",
        weight_mode="per-channel",
        calibration=CalibrationInfo(images=1, crop=16, seed=0),
        layers={"head": layer},
    )


def test_checkpoint_is_stored_relative_to_the_recipe(tmp_path: Path, monkeypatch) -> None:
    weights = tmp_path / "weights" / "m.pth"
    weights.parent.mkdir()
    weights.write_bytes(b"w")
    monkeypatch.chdir(tmp_path)
    field = checkpoint_field(Path("weights/m.pth"), Path("out/recipes/r.json"))
    assert field == "../../weights/m.pth"
    monkeypatch.chdir(weights.parent)  # anywhere else
    assert recipe_checkpoint(_recipe(field), tmp_path / "out/recipes/r.json").resolve() == weights


def test_older_recipes_relative_to_the_quantize_folder_still_load(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "w.pth").write_bytes(b"w")
    (tmp_path / "recipes").mkdir()
    monkeypatch.chdir(tmp_path)
    assert recipe_checkpoint(_recipe("w.pth"), "recipes/r.json") == Path("w.pth")
    assert recipe_checkpoint(_recipe(str(tmp_path / "w.pth")), "recipes/r.json") == tmp_path / "w.pth"
    assert recipe_checkpoint(_recipe(""), "recipes/r.json") is None


@pytest.mark.parametrize("scale", [1e-45, 1e-11, 1e38, 2e6])
def test_activation_scales_outside_the_bounds_are_refused(scale: float) -> None:
    low, high = ACT_SCALE_BOUNDS
    with pytest.raises(
        RecipeError, match="^" + re.escape(f"scale: {scale!r} is outside [{low:g}, {high:g}]")
    ):
        UniformAct(8, scale)
    with pytest.raises(RecipeError, match=r"^outlier_scale: .* is outside"):
        DualRegionAct(budget="split", bits=4, lower=-1, breakpoint=0.5, upper=2, outlier_scale=scale)


def test_range_bounds_beyond_the_limit_are_refused() -> None:
    with pytest.raises(RecipeError, match=r"^upper: 1e\+38 is beyond"):
        DualRegionAct(budget="b-bit", bits=4, lower=-1, breakpoint=0.5, upper=1e38)
    with pytest.raises(RecipeError, match=r"^breakpoint: 1e-45 is below 1e-10"):
        DualRegionAct(budget="b-bit", bits=4, lower=-1, breakpoint=1e-45, upper=2)
    assert dataclasses.replace(UniformAct(8, 1.0), scale=1e-10).scale == 1e-10
