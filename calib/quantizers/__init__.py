"""Torch fake quantizers (uniform, dual-region, weights), layer wrapping and recipe I/O.

Every forward pass computes its float32 steps exactly as `drq.grids` does, so what export builds from
a recipe reproduces the simulated model bit for bit. Gradient rules: `calib.quantizers.ste`.
"""

from __future__ import annotations

from calib.quantizers.dual_region import DualRegionActQuantizer
from calib.quantizers.fp8 import FP8ActQuantizer, FP8WeightQuantizer
from calib.quantizers.layers import (
    QuantLayer,
    apply_recipe,
    capture_first_inputs,
    layer_op,
    output_channel_axis,
    quant_layers,
    quantizable_layers,
    recipe_layers,
    set_quant_enabled,
    wrap_model,
)
from calib.quantizers.ste import round_ste
from calib.quantizers.uniform import UniformActQuantizer, WeightQuantizer

__all__ = [
    "DualRegionActQuantizer",
    "FP8ActQuantizer",
    "FP8WeightQuantizer",
    "QuantLayer",
    "UniformActQuantizer",
    "WeightQuantizer",
    "apply_recipe",
    "capture_first_inputs",
    "layer_op",
    "output_channel_axis",
    "quant_layers",
    "quantizable_layers",
    "recipe_layers",
    "round_ste",
    "set_quant_enabled",
    "wrap_model",
]
