"""Options and the pieces every quantizing lowering shares: recipe -> node lookup, offline weight codes.

All float arithmetic is float32 NumPy with one rounding per operation (IEEE division, `np.rint` half to
even), the order of `drq.grids` and the torch quantizers, so initializers equal the torch tensors.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx

from drq.recipe import LayerRecipe, Recipe, UniformAct, WeightQuant, decode_weight_codes
from engine_builder.errors import ExportError
from engine_builder.lowerings.graph import (
    LOWERING_KEY,
    RECIPE_SHA_KEY,
    GraphEditor,
    layer_nodes,
    set_metadata,
)

_F32 = np.float32
IoDtype = Literal["fp32", "fp16"]
Target = Literal["tensorrt", "ort-cpu"]
Glue = Literal["fp32", "fp16"]
OrtWeights = Literal["uint8", "int8", "int7"]


@dataclass(frozen=True)
class LoweringOptions:
    """How to lower (every field has the TensorRT default).

    Attributes:
        io_dtype: element type of `lr`/`sr` for the fp16 lowering and for fp16 glue (the others keep
            float32 I/O).
        glue: "fp16" runs every non-quantized op of a quantizing lowering in float16
            (`fp16_glue.apply_fp16_glue`, applied by `registry.lower`); target "tensorrt" only.
        target: "tensorrt" writes the graph TensorRT wants; "ort-cpu" reshapes only the quantized convs
            of `qdq`/`drq-split` into the integer patterns onnxruntime's CPU kernels run (same values).
        outlier_channels_only: drq-split: the outlier branch only reads the recipe's outlier channels.
        output_ranges: target "ort-cpu" only: observed float (min, max) of conv outputs keyed by node
            name (`ort_cpu.observe_conv_outputs`); onnxruntime's QLinearConv needs an output
            quantization, so a quantized conv without a range keeps its TensorRT (Q/DQ, float conv) form.
        ort_weights: target "ort-cpu" only: how QLinearConv stores weight codes (`act_graphs.qlinear_conv`):
            "uint8" (exact on every x86 CPU, the default), "int8" (fastest; exact only with VNNI or on ARM),
            "int7" (7-bit weights: fast and exact on AVX2, at the cost of one weight bit).
    """

    io_dtype: IoDtype = "fp32"
    target: Target = "tensorrt"
    outlier_channels_only: bool = False
    output_ranges: Mapping[str, tuple[float, float]] | None = None
    glue: Glue = "fp32"
    ort_weights: OrtWeights = "uint8"

    def __post_init__(self) -> None:
        if self.io_dtype not in ("fp32", "fp16"):
            raise ExportError(f"io_dtype: must be fp32 or fp16, got {self.io_dtype!r}")
        if self.target not in ("tensorrt", "ort-cpu"):
            raise ExportError(f"target: must be tensorrt or ort-cpu, got {self.target!r}")
        if self.ort_weights not in ("uint8", "int8", "int7"):
            raise ExportError(f"ort_weights: must be uint8, int8 or int7, got {self.ort_weights!r}")
        if self.glue not in ("fp32", "fp16"):
            raise ExportError(f"glue: must be fp32 or fp16, got {self.glue!r}")
        if self.glue == "fp16" and self.target != "tensorrt":
            # onnxruntime's CPU integer kernels take float32 around QLinearConv; its float16 ops are
            # mostly cast back to float32, so the CPU graph keeps float32 glue.
            raise ExportError("glue fp16: for --target tensorrt only; --target ort-cpu keeps fp32 glue")


BUDGET_LOWERINGS = {
    "uniform": "qdq",
    "split": "drq-split",
    "b-bit": "drq-plugin",
    "mixed": "mixed",
    "fp8": "fp8",
}
"""The lowering each recipe budget goes to (what a refusal suggests); other budgets: fakequant."""


def check_recipe(recipe: Recipe | None, lowering: str, budget: str, *, int8_layers: bool = False) -> Recipe:
    """The recipe, if `lowering` can express it: its budget is `budget`, or with `int8_layers` every
    layer is 8-bit signed symmetric uniform on its input (what plain Q/DQ can carry).

    Raises:
        ExportError: no recipe, another budget, or (int8_layers) the first layer that needs another
            lowering; the message names the lowering that fits.
    """
    if recipe is None:
        raise ExportError(
            f"{lowering}: needs a recipe with the {budget!r} budget (use --lowering fp32 or fp16 for a "
            "float model)"
        )
    if not int8_layers:
        if recipe.budget != budget:
            raise ExportError(
                f"recipe: {lowering} lowers the {budget!r} budget, this recipe has {recipe.budget!r}; use "
                f"--lowering {BUDGET_LOWERINGS.get(recipe.budget, 'fakequant')}"
            )
        return recipe
    for name, layer in recipe.layers.items():
        act = layer.act
        if recipe.budget == "fp8":
            raise ExportError(
                f"recipe layer {name!r}: {lowering} needs INT8 activations, the recipe is fp8; "
                "use --lowering fp8"
            )
        if not isinstance(act, UniformAct):
            raise ExportError(
                f"recipe layer {name!r}: {lowering} needs uniform activations, the recipe has the "
                f"{act.budget!r} dual-region budget; use --lowering fakequant (or drq-split / "
                "drq-plugin for their budgets)"
            )
        if act.bits != 8 or not act.symmetric:
            raise ExportError(
                f"recipe layer {name!r}: {lowering} needs 8-bit signed symmetric activations, got "
                f"{act.bits}-bit {'signed' if act.signed else 'unsigned'} zero point "
                f"{act.zero_point}; use --lowering fakequant"
            )
    return recipe


def start(model: onnx.ModelProto, name: str, recipe: Recipe | None) -> tuple[onnx.ModelProto, GraphEditor]:
    """Copy the float model, tag it with the lowering (and recipe hash), return it with an editor."""
    out = copy.deepcopy(model)
    meta = {LOWERING_KEY: name}
    if recipe is not None:
        meta[RECIPE_SHA_KEY] = recipe.sha256()
    set_metadata(out, meta)
    return out, GraphEditor(out)


def recipe_nodes(model: onnx.ModelProto, recipe: Recipe, lowering: str) -> list[tuple[str, LayerRecipe, str]]:
    """(layer name, layer recipe, node name) for every call of every recipe layer, in recipe order.

    Raises:
        ExportError: a recipe layer has no node in the graph (lists a few that exist).
    """
    mapping = layer_nodes(model)
    out = []
    for name, layer in recipe.layers.items():
        if name not in mapping:
            known = ", ".join(list(mapping)[:6])
            raise ExportError(
                f"recipe layer {name!r}: not in the exported graph ({lowering}); graph layers: {known}, ..."
            )
        out.extend((name, layer, node) for node in mapping[name])
    return out


def weight_scale_array(weight: np.ndarray, wq: WeightQuant, layer: str) -> tuple[np.ndarray, int | None]:
    """The recipe's weight scales as float32 (C,) (or a scalar) and the axis they apply to.

    Raises:
        ExportError: the scale count does not match the weight's channel count on that axis.
    """
    scale = np.asarray(wq.scale, dtype=_F32)
    if wq.axis is None:
        return scale.reshape(()), None
    if wq.axis >= weight.ndim or weight.shape[wq.axis] != scale.size:
        raise ExportError(
            f"recipe layer {layer!r}: weight.scale has {scale.size} entries but the weight has "
            f"shape {tuple(weight.shape)} (axis {wq.axis})"
        )
    return scale, wq.axis


def _broadcast(scale: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    if axis is None:
        return scale
    shape = [1] * ndim
    shape[axis] = scale.size
    return scale.reshape(shape)


def weight_codes(
    weight: np.ndarray, wq: WeightQuant, layer: str
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Offline symmetric narrow-range weight codes: clamp(rint(w / s), -qmax, qmax) as int8, or the
    recipe's stored codes (learned rounding).

    Returns:
        (codes int8 with the weight's shape, scales float32 (C,) or (), axis or None).
    """
    scale, axis = weight_scale_array(weight, wq, layer)
    if wq.codes:  # learned rounding (calib.adaround): the recipe's codes, not round(w / s)
        stored = decode_weight_codes(wq)
        if stored.size != weight.size:
            raise ExportError(
                f"recipe layer {layer!r}: weight.codes has {stored.size} codes for a weight of "
                f"shape {tuple(weight.shape)}"
            )
        return stored.reshape(weight.shape), scale, axis
    s = _broadcast(scale, axis, weight.ndim)
    codes = np.clip(np.rint(weight.astype(_F32) / s), -wq.qmax, wq.qmax)
    return codes.astype(np.int8), scale, axis


def fake_quant_weight(weight: np.ndarray, wq: WeightQuant, layer: str) -> np.ndarray:
    """The dequantized weight codes * s in float32 (what DequantizeLinear and the torch quantizer give)."""
    codes, scale, axis = weight_codes(weight, wq, layer)
    return (codes.astype(_F32) * _broadcast(scale, axis, weight.ndim)).astype(_F32)


def add_weight_dq(
    ed: GraphEditor,
    node: onnx.NodeProto,
    weight: np.ndarray,
    wq: WeightQuant,
    layer: str,
    codes: np.ndarray | None = None,
    base: str | None = None,
) -> str:
    """Add int8 weight codes + DequantizeLinear before `node`; return the DQ output.

    `codes` overrides the codes (e.g. a channel slice); scales and axis follow the recipe.
    """
    full_codes, scale, axis = weight_codes(weight, wq, layer)
    codes = full_codes if codes is None else codes
    base = base or f"{layer}.weight"
    q_name = ed.add_init(f"{base}_int8", codes)
    s_name = ed.add_init(f"{base}_scale", scale)
    zp_name = ed.add_init(f"{base}_zero_point", np.zeros(scale.shape, dtype=np.int8))
    attrs = {} if axis is None else {"axis": axis}
    return ed.make1("DequantizeLinear", [q_name, s_name, zp_name], f"{base}_DequantizeLinear", node, **attrs)


def cpu_output_range(
    options: LoweringOptions, node: onnx.NodeProto, suffix: str = ""
) -> tuple[float, float] | None:
    """The observed output range of `node` (+ suffix) when lowering for onnxruntime's CPU QLinearConv."""
    if options.target != "ort-cpu" or node.op_type != "Conv" or not options.output_ranges:
        return None
    return options.output_ranges.get(node.name + suffix)
