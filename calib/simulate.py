"""Rebuild the fake-quantized torch model a recipe describes (simulated quantization, for evaluation)."""

from __future__ import annotations

import os

from torch import nn

import calib.models as models
from calib.errors import RecipeError
from calib.quantizers import apply_recipe
from calib.recipe import Recipe


def load_simulated_model(recipe: Recipe, weights: str | os.PathLike[str] | None = None) -> nn.Module:
    """Load the recipe's checkpoint, check it is the one calibrated, apply the recipe, eval mode.

    Args:
        recipe: a validated recipe.
        weights: checkpoint path; defaults to the path the recipe records (`model.checkpoint`).

    Returns:
        The model with its recipe layers wrapped in fake-quantizing `QuantLayer`s ([0, 1] images in and out).

    Raises:
        RecipeError: no checkpoint path is known, the checkpoint's sha256 differs from the recipe's
            (`<weights>: checkpoint sha256 differs from the recipe's (...)`), or the model does not
            have the recipe's layers.
        CalibError: from `calib.models` for an unknown architecture or an unreadable checkpoint.
    """
    path = os.fspath(weights) if weights is not None else recipe.model.checkpoint
    if not path:
        raise RecipeError(
            "model.checkpoint: the recipe records no checkpoint path; pass the weights explicitly"
        )
    loaded = models.load_pretrained(recipe.model.arch, recipe.model.scale, path)
    expected = recipe.model.checkpoint_sha256
    # An empty sha256 means the recipe was made without a checkpoint file (nothing to compare).
    if expected and loaded.checkpoint_sha256 != expected:
        raise RecipeError(
            f"{path}: checkpoint sha256 differs from the recipe's "
            f"({loaded.checkpoint_sha256[:12]}... vs {expected[:12]}...)"
        )
    model = loaded.model
    apply_recipe(model, recipe)
    return model.eval()
