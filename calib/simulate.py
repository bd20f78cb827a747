"""Rebuild the fake-quantized torch model a recipe describes (simulated quantization, for evaluation)."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

import calib.models as models
from calib.quantizers import apply_recipe
from drq.artifacts import sha256_file
from drq.errors import RecipeError
from drq.recipe import Recipe, recipe_checkpoint


def load_simulated_model(
    recipe: Recipe,
    weights: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
) -> nn.Module:
    """Load the recipe's checkpoint, check it is the one calibrated, apply the recipe, eval mode.

    Args:
        recipe: a validated recipe.
        weights: checkpoint path; defaults to the path the recipe records (`model.checkpoint`, relative
            to the folder of `source`, see `drq.recipe.recipe_checkpoint`).
        source: the recipe file, named in errors about its fields.

    Returns:
        The model with its recipe layers wrapped in fake-quantizing `QuantLayer`s ([0, 1] images in and out).

    Raises:
        RecipeError: no checkpoint path is known, the checkpoint's sha256 differs from the recipe's
            (`<weights>: checkpoint sha256 differs from the recipe's (...)`), or the model does not
            have the recipe's layers.
        CalibError: from `calib.models` for an unknown architecture or an unreadable checkpoint.
    """
    if recipe.model.arch == "custom":
        raise RecipeError(
            "model.arch: 'custom' recipes belong to a module outside the zoo (calib.api.quantize_model); "
            "export or simulate them from Python with engine_builder.api.export_model / "
            "calib.api.simulate_model"
        )
    if weights is None and source is not None:
        weights = recipe_checkpoint(recipe, source)
    path = os.fspath(weights) if weights is not None else recipe.model.checkpoint
    if not path:
        raise RecipeError(
            f"{source or 'recipe'}: model.checkpoint: the recipe records no checkpoint path; "
            "pass the weights explicitly"
        )
    expected = recipe.model.checkpoint_sha256
    # An empty sha256 means the recipe was made without a checkpoint file (nothing to compare).
    # Hash first: a wrong checkpoint gets this message rather than the zoo's shape mismatch.
    if expected and Path(path).is_file():
        _check_sha256(path, sha256_file(path), expected)
    loaded = models.load_pretrained(recipe.model.arch, recipe.model.scale, path)
    if expected:
        _check_sha256(path, loaded.checkpoint_sha256, expected)
    model = loaded.model
    try:
        apply_recipe(model, recipe)
    except RecipeError as err:
        raise RecipeError(f"{source}: {err}" if source is not None else str(err)) from err
    return model.eval()


def _check_sha256(path: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise RecipeError(
            f"{path}: checkpoint sha256 differs from the recipe's ({actual[:12]}... vs {expected[:12]}...)"
        )
