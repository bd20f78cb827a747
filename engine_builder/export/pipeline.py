"""Checkpoint or recipe -> lowered ONNX: the library behind `drq export` (torch module).

The recipe path goes through `calib.simulate.load_simulated_model` (which loads the checkpoint through
the model zoo and refuses one whose sha256 differs from the recipe's); the float graph is exported from
the unwrapped model, then lowered by name (`engine_builder.lowerings.registry`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from torch import nn

from drq.recipe import Recipe
from engine_builder.errors import ExportError
from engine_builder.export.torch_export import export_float_onnx
from engine_builder.lowerings.common import LoweringOptions
from engine_builder.lowerings.graph import set_metadata
from engine_builder.lowerings.ort_cpu import lower_for_ort_cpu
from engine_builder.lowerings.registry import FLOAT_LOWERINGS, default_lowering, lower

ARCH_KEY = "drq.arch"
CHECKPOINT_SHA_KEY = "drq.checkpoint_sha256"


def lower_module(
    model: nn.Module,
    scale: int,
    lowering: str,
    recipe: Recipe | None = None,
    options: LoweringOptions | None = None,
    arch: str = "",
    calib_inputs: Sequence[np.ndarray] | None = None,
) -> onnx.ModelProto:
    """Export `model` (float or calib-wrapped) to a float graph and lower it.

    `calib_inputs` (LR arrays, NCHW float32) are required by `target="ort-cpu"` for quantizing
    lowerings: they give the conv output ranges onnxruntime's QLinearConv needs.

    Raises:
        ExportError: the lowering cannot express the recipe, export fails, or ort-cpu lacks inputs.
    """
    options = options or LoweringOptions()
    float_model = export_float_onnx(model, scale=scale)
    if options.target == "ort-cpu" and lowering in ("qdq", "drq-split", "mixed"):
        if not calib_inputs:
            raise ExportError(
                f"--target ort-cpu: {lowering} needs calibration images (--calib DIR) to observe "
                "conv output ranges"
            )
        out = lower_for_ort_cpu(lowering, float_model, recipe, options, calib_inputs)
    else:
        out = lower(lowering, float_model, recipe, options)
    if arch:
        set_metadata(out, {ARCH_KEY: arch})
    return out


def export_recipe(
    recipe: Recipe,
    weights: str | Path | None = None,
    lowering: str | None = None,
    options: LoweringOptions | None = None,
    calib_inputs: Sequence[np.ndarray] | None = None,
    source: str | Path | None = None,
) -> onnx.ModelProto:
    """The lowered graph of a recipe's model (weights from `weights` or the recipe's checkpoint path).

    Raises:
        RecipeError: the checkpoint's sha256 differs from the recipe's (from calib.simulate).
        ExportError: the lowering cannot express the recipe.
    """
    from calib.simulate import load_simulated_model

    name = lowering or default_lowering(recipe)
    model = load_simulated_model(recipe, weights, source)
    out = lower_module(
        model,
        recipe.model.scale,
        name,
        None if name in FLOAT_LOWERINGS else recipe,
        options,
        arch=recipe.model.arch,
        calib_inputs=calib_inputs,
    )
    if recipe.model.checkpoint_sha256:
        set_metadata(out, {CHECKPOINT_SHA_KEY: recipe.model.checkpoint_sha256})
    return out


def export_checkpoint(
    arch: str, weights: str | Path, scale: int, lowering: str = "fp32", options: LoweringOptions | None = None
) -> onnx.ModelProto:
    """The FP graph (fp32 or fp16) of a pretrained checkpoint, without a recipe.

    Raises:
        ExportError: a quantizing lowering was asked for without a recipe.
        ModelError: unknown architecture / scale, or a checkpoint that does not fit (from calib.models).
    """
    if lowering not in FLOAT_LOWERINGS:
        raise ExportError(
            f"lowering {lowering!r}: needs --recipe; without one choose from {', '.join(FLOAT_LOWERINGS)}"
        )
    from calib.models import load_pretrained

    loaded = load_pretrained(arch, scale, weights)
    out = lower_module(loaded.model, scale, lowering, None, options, arch=arch)
    set_metadata(out, {CHECKPOINT_SHA_KEY: loaded.checkpoint_sha256})
    return out
