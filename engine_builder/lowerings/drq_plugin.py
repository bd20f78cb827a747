"""`drq-plugin`: placeholder until plugins.onnx_function exists."""

from __future__ import annotations

import onnx

from calib.recipe import Recipe
from engine_builder.errors import ExportError
from engine_builder.lowerings.common import LoweringOptions


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    raise ExportError("drq-plugin: not available yet")
