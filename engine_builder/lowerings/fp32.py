"""`fp32`: the float graph as exported (the FP32 baseline); only tagged with its lowering name."""

from __future__ import annotations

import onnx

from drq.recipe import Recipe
from engine_builder.lowerings.common import LoweringOptions, start
from engine_builder.lowerings.graph import finalize


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    """Return the float graph unchanged (a recipe, if given, is ignored: this is the FP baseline)."""
    model, _ = start(float_model, "fp32", None)
    return finalize(model)
