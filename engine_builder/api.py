"""Python API: quantize and export any SR `nn.Module` (no registration in `calib.models` needed).

    from engine_builder.api import export_model, quantize_model

    recipe = quantize_model(net, calib_images, QuantizeConfig(method="fp8", w_bits=8, a_bits=8,
                                                               budget="fp8"))
    export_model(net, recipe, "fp8", "net_fp8.onnx")

`quantize_model` is `calib.api.quantize_model`, re-exported so one import serves both steps. Every
lowering of `drq export` is available (`engine_builder.lowerings.registry.LOWERINGS`); the graph is the
one `drq export` writes for a zoo model, so `drq build`, `drq eval --onnx` and `drq upscale` take it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import onnx
from torch import nn

from calib.api import (
    CUSTOM_ARCH,
    calibration_crops,
    check_model_identity,
    infer_scale,
    quantize_model,
    simulate_model,
    state_dict_sha256,
)
from drq.artifacts import atomic_write_bytes
from drq.recipe import Recipe
from engine_builder.errors import ExportError
from engine_builder.export.pipeline import lower_module
from engine_builder.lowerings.common import LoweringOptions
from engine_builder.lowerings.graph import set_metadata
from engine_builder.lowerings.registry import FLOAT_LOWERINGS, default_lowering

__all__ = ["export_model", "quantize_model", "simulate_model", "calibration_crops", "state_dict_sha256"]

STATE_DICT_SHA_KEY = "drq.state_dict_sha256"


def export_model(
    model: nn.Module,
    recipe: Recipe | None = None,
    lowering: str | None = None,
    path: str | os.PathLike[str] | None = None,
    *,
    scale: int | None = None,
    options: LoweringOptions | None = None,
    calib_inputs: Sequence[np.ndarray] | None = None,
) -> onnx.ModelProto:
    """Lower `model` (with `recipe`, or as a float graph) to ONNX; write it to `path` when given.

    Args:
        model: the float module the recipe was made from (`calib.api.quantize_model`); checked by its
            state_dict sha256 and class.
        recipe: the recipe; None exports the float model (lowering fp32 or fp16).
        lowering: a name of `LOWERINGS`; default: the recipe's own (`default_lowering`), else fp32.
        path: where to write the ONNX file (atomically); None only returns the graph.
        scale: upscaling factor without a recipe (inferred from one forward pass when None).
        options: `LoweringOptions` (I/O dtype, ort-cpu target, outlier channels only).
        calib_inputs: LR arrays (1 x 3 x h x w float32), needed by `target="ort-cpu"`.

    Raises:
        RecipeError: the module is not the one the recipe was calibrated on.
        ExportError: the lowering cannot express the recipe, or a quantizing lowering without one.
    """
    name = lowering or default_lowering(recipe)
    if recipe is not None:
        check_model_identity(model, recipe)
        scale = recipe.model.scale
    elif name not in FLOAT_LOWERINGS:
        raise ExportError(
            f"lowering {name!r}: needs a recipe; without one choose from {', '.join(FLOAT_LOWERINGS)}"
        )
    scale = infer_scale(model) if scale is None else scale
    arch = recipe.model.arch if recipe is not None else CUSTOM_ARCH
    graph = lower_module(
        model,
        scale,
        name,
        None if name in FLOAT_LOWERINGS else recipe,
        options,
        arch=arch,
        calib_inputs=calib_inputs,
    )
    set_metadata(graph, {STATE_DICT_SHA_KEY: state_dict_sha256(model)})
    if path is not None:
        atomic_write_bytes(path, graph.SerializeToString())
    return graph
