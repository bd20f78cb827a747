"""`fp8`: explicit FP8 (E4M3) for TensorRT: QuantizeLinear/DequantizeLinear with float8e4m3fn codes.

The float graph is converted to opset 19 (the first opset whose QuantizeLinear/DequantizeLinear take
float8 zero points; `onnx.version_converter` rewrites the few ops whose signature changed, e.g.
ReduceMean's axes). Then, as `qdq` does for INT8 (TensorRT "Working with Quantized Types": Q/DQ on
the conv input and a DQ on the weight), every recipe conv input gets a per-tensor pair
Q(x, s, 0 as float8e4m3fn) -> DQ, and its weight becomes float8e4m3fn initializer codes,
e4m3(clamp(w / s_c, -448, 448)) computed offline, behind a per-channel DequantizeLinear (axis 0, 1 for
ConvTranspose). QuantizeLinear's default saturate=1 clamps to +-448 exactly as the torch quantizer
(`calib.quantizers.fp8`) does, and both round to nearest even, so onnxruntime reproduces the torch
simulation bit for bit.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
from onnx import version_converter

from drq.recipe import FP8_E4M3_MAX, FP8Act, Recipe, WeightQuant
from engine_builder.errors import ExportError
from engine_builder.lowerings.common import LoweringOptions, recipe_nodes, start, weight_scale_array
from engine_builder.lowerings.graph import GraphEditor, finalize, opset_of

FP8_OPSET = 19
_F32 = np.float32
E4M3 = ml_dtypes.float8_e4m3fn


def check_fp8_recipe(recipe: Recipe | None) -> Recipe:
    """The recipe, if it is an fp8 one.

    Raises:
        ExportError: no recipe, or another budget (naming the lowering that fits it).
    """
    if recipe is None:
        raise ExportError("fp8: needs a recipe (use --lowering fp32 or fp16 for a float model)")
    if recipe.budget != "fp8":
        raise ExportError(
            f"recipe: the fp8 lowering needs an fp8 recipe (drq quantize --method fp8), this one has the "
            f"{recipe.budget!r} budget"
        )
    return recipe


def e4m3_codes(values: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """e4m3(clamp(values / scale, -448, 448)) as float8e4m3fn (float32 division, ties to even)."""
    v = np.clip(values.astype(_F32) / scale.astype(_F32), -FP8_E4M3_MAX, FP8_E4M3_MAX)
    return v.astype(E4M3)


def fp8_weight_codes(
    weight: np.ndarray, wq: WeightQuant, layer: str
) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(float8e4m3fn codes shaped like `weight`, float32 scales (C,) or (), axis or None)."""
    scale, axis = weight_scale_array(weight, wq, layer)
    shape = [1] * weight.ndim
    if axis is not None:
        shape[axis] = scale.size
    return e4m3_codes(weight, scale.reshape(shape)), scale, axis


def _to_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    if opset_of(model) >= FP8_OPSET:
        return model
    try:
        converted = version_converter.convert_version(model, FP8_OPSET)
    except Exception as err:  # the converter raises RuntimeError / ValueError subclasses per adapter
        raise ExportError(f"fp8: cannot convert the float graph to opset {FP8_OPSET} ({err})") from err
    del converted.metadata_props[:]
    converted.metadata_props.extend(model.metadata_props)
    return converted


def _qdq_fp8(ed: GraphEditor, x: str, scale: float, before: onnx.NodeProto, base: str) -> str:
    s = ed.scalar(f"{base}_scale", _F32(scale))
    z = ed.add_init(f"{base}_zero_point", np.zeros((), dtype=E4M3))
    q = ed.make1("QuantizeLinear", [x, s, z], f"{base}_QuantizeLinear", before)
    return ed.make1("DequantizeLinear", [q, s, z], f"{base}_DequantizeLinear", before)


def _weight_dq_fp8(ed: GraphEditor, node: onnx.NodeProto, wq: WeightQuant, layer: str) -> str:
    codes, scale, axis = fp8_weight_codes(ed.array(node.input[1]), wq, layer)
    base = f"{layer}.weight"
    q_name = ed.add_init(f"{base}_e4m3", codes)
    s_name = ed.add_init(f"{base}_scale", scale)
    z_name = ed.add_init(f"{base}_zero_point", np.zeros(scale.shape, dtype=E4M3))
    attrs = {} if axis is None else {"axis": axis}
    return ed.make1("DequantizeLinear", [q_name, s_name, z_name], f"{base}_DequantizeLinear", node, **attrs)


def lower(float_model: onnx.ModelProto, recipe: Recipe | None, options: LoweringOptions) -> onnx.ModelProto:
    """FP8 Q/DQ on every recipe layer's input and weight (see module docstring).

    Raises:
        ExportError: the recipe is not an fp8 one, or a recipe layer is missing from the graph.
    """
    recipe = check_fp8_recipe(recipe)
    model, _ = start(float_model, "fp8", recipe)
    model = _to_opset(model)
    ed = GraphEditor(model)
    for name, layer, node_name in recipe_nodes(model, recipe, "fp8"):
        node = ed.node(node_name)
        act = layer.act
        assert isinstance(act, FP8Act)  # check_fp8_recipe + Recipe validation guarantee it
        node.input[0] = _qdq_fp8(ed, node.input[0], act.scale, node, f"{name}.input")
        node.input[1] = _weight_dq_fp8(ed, node, layer.weight, name)
    ed.commit()
    return finalize(model)
