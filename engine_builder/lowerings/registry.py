"""The lowering registry: name -> `lower(float_model, recipe, options) -> onnx.ModelProto`.

Filled explicitly (no folder scan); an unknown name lists the valid ones.
"""

from __future__ import annotations

from typing import Protocol

import onnx

from drq.recipe import Recipe
from engine_builder.errors import ExportError
from engine_builder.lowerings import drq_plugin, drq_split, fakequant, fp8, fp16, fp32, mixed, qdq
from engine_builder.lowerings.common import LoweringOptions, check_recipe


class Lowering(Protocol):
    def __call__(
        self, float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions
    ) -> onnx.ModelProto: ...


LOWERINGS: dict[str, Lowering] = {
    "fp32": fp32.lower,
    "fp16": fp16.lower,
    "qdq": qdq.lower,
    "drq-split": drq_split.lower,
    "fakequant": fakequant.lower,
    "drq-plugin": drq_plugin.lower,
    "mixed": mixed.lower,
    "fp8": fp8.lower,
}
FLOAT_LOWERINGS = ("fp32", "fp16")
NO_GLUE_LOWERINGS = (*FLOAT_LOWERINGS, "fakequant")
"""Lowerings without a quantized conv to put FP16 glue around (fakequant emulates grids in float32)."""


def takes_fp16_glue(name: str) -> bool:
    """Whether lowering `name` quantizes convs, so that `glue="fp16"` applies to its graph."""
    return name not in NO_GLUE_LOWERINGS


def get_lowering(name: str) -> Lowering:
    """The lowering called `name`.

    Raises:
        ExportError: unknown name (the message lists the valid ones).
    """
    try:
        return LOWERINGS[name]
    except KeyError:
        raise ExportError(f"lowering {name!r}: unknown; choose from {', '.join(LOWERINGS)}") from None


def default_lowering(recipe: Recipe | None) -> str:
    """qdq for uniform INT8 recipes, the matching dual-region lowering, fp8 for fp8 recipes, else
    fakequant; fp32 without one."""
    if recipe is None:
        return "fp32"
    if recipe.budget == "fp8":
        return "fp8"
    if recipe.budget == "split":
        return "drq-split"
    if recipe.budget == "mixed":
        return "mixed"
    if recipe.budget == "b-bit":
        return "drq-plugin"
    if recipe.budget == "uniform":
        try:
            check_recipe(recipe, "qdq", "uniform", int8_layers=True)
            return "qdq"
        except ExportError:
            return "fakequant"
    return "fakequant"


def lower(
    name: str, float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions | None = None
) -> onnx.ModelProto:
    """Run lowering `name` (see `LOWERINGS`), then the FP16 glue pass when `options.glue` is "fp16".

    Raises:
        ExportError: unknown lowering, a recipe it cannot express, or fp16 glue for a lowering
            without quantized convs.
    """
    options = options or LoweringOptions()
    model = get_lowering(name)(float_model, recipe, options)
    if options.glue == "fp32":
        return model
    if not takes_fp16_glue(name):
        raise ExportError(
            f"glue fp16: {name} has no quantized convs to put FP16 glue around "
            f"(fp16 is the all-FP16 lowering; fakequant stays float32)"
        )
    from engine_builder.lowerings.fp16_glue import apply_fp16_glue

    return apply_fp16_glue(model, options.io_dtype)
