"""The lowering registry: name -> `lower(float_model, recipe, options) -> onnx.ModelProto`.

Filled explicitly (no folder scan); an unknown name lists the valid ones.
"""

from __future__ import annotations

from typing import Protocol

import onnx

from drq.recipe import Recipe
from engine_builder.errors import ExportError
from engine_builder.lowerings import drq_plugin, drq_split, fakequant, fp8, fp16, fp32, qdq
from engine_builder.lowerings.common import LoweringOptions


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
    "fp8": fp8.lower,
}
FLOAT_LOWERINGS = ("fp32", "fp16")


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
    if recipe.budget == "b-bit":
        return "drq-plugin"
    if recipe.budget == "uniform":
        try:
            qdq.check_int8_recipe(recipe, "qdq")
            return "qdq"
        except ExportError:
            return "fakequant"
    return "fakequant"


def lower(
    name: str, float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions | None = None
) -> onnx.ModelProto:
    """Run lowering `name` (see `LOWERINGS`)."""
    return get_lowering(name)(float_model, recipe, options or LoweringOptions())
