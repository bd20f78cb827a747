"""Export a float torch SR model to an ONNX graph that the lowerings can rewrite.

The graph: opset 17 (QuantizeLinear/DequantizeLinear per-axis needs >= 13; 17 is the newest opset every
TensorRT 8.6+/10.x/11.x and TensorRT-RTX parser accepts and that the TorchScript exporter of torch 2.x
emits without version-conversion passes), one input `lr` and one output `sr` (NCHW float32, dynamic
N/H/W), weights as named initializers. Its metadata maps every Conv/ConvTranspose/Gemm node to the
qualified name of the torch module that computes it (`drq.layers`), so a recipe layer finds its node.

The TorchScript exporter (`dynamo=False`) is used on purpose: it keeps parameter names as initializer
names (`body.0.c1.weight`), emits DepthToSpace for PixelShuffle, and handles dynamic axes through
`dynamic_axes`. The map is built from those initializer names, verified against the module's weight
values; scope-derived node names (`/body/body.0/c1/Conv`) are a fallback.
"""

from __future__ import annotations

import copy
import io
import json
import warnings

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from engine_builder.errors import ExportError
from engine_builder.lowerings.graph import (
    INPUT_NAME,
    LAYER_CALLS_KEY,
    LAYER_MAP_KEY,
    LAYER_OPS,
    OPSET,
    OUTPUT_NAME,
    SCALE_KEY,
    finalize,
    set_metadata,
)

_LAYER_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_OP_OF = {nn.Conv2d: "Conv", nn.ConvTranspose2d: "ConvTranspose", nn.Linear: "Gemm"}


def unwrap_quant_layers(model: nn.Module) -> nn.Module:
    """A copy of `model` with every calib QuantLayer replaced by the float layer it wraps.

    Duck-typed on the `calib.quantizers.QuantLayer` contract (`layer` + `a_quant` + `w_quant`), so the
    exporter never runs a fake quantizer: quantization is the lowering's job.
    """
    model = copy.deepcopy(model)
    for _, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if hasattr(child, "layer") and hasattr(child, "a_quant") and hasattr(child, "w_quant"):
                setattr(module, child_name, child.layer)
    return model


def _layers(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, _LAYER_TYPES)}


def _scope_name(node_name: str) -> str:
    """`/body/body.0/c1/Conv` -> `body.0.c1` (scope components repeat their parent's prefix)."""
    parts = [p for p in node_name.split("/") if p][:-1]
    acc = ""
    for part in parts:
        acc = part if (acc and part.startswith(acc + ".")) or not acc else f"{acc}.{part}"
    return acc


def _map_layers(model: onnx.ModelProto, layers: dict[str, nn.Module]) -> dict[str, list[str]]:
    inits = {t.name: t for t in model.graph.initializer}
    weights = {name: m.weight.detach().cpu().numpy() for name, m in layers.items()}
    mapping: dict[str, list[str]] = {}
    for node in model.graph.node:
        if node.op_type not in LAYER_OPS or len(node.input) < 2 or node.input[1] not in inits:
            continue
        value = numpy_helper.to_array(inits[node.input[1]])
        candidates = []
        by_init = node.input[1][: -len(".weight")] if node.input[1].endswith(".weight") else None
        by_scope = _scope_name(node.name)
        for name in (by_init, by_scope):
            if name in layers and _OP_OF[type(layers[name])] == node.op_type:
                candidates.append(name)
        # Verify by value: the exporter may have folded something into the weight (e.g. BatchNorm).
        matched = [
            n for n in candidates if weights[n].shape == value.shape and np.array_equal(weights[n], value)
        ]
        if not matched:  # last resort: a unique bitwise-equal weight among all layers of the right op
            matched = [
                n
                for n, w in weights.items()
                if w.shape == value.shape
                and np.array_equal(w, value)
                and _OP_OF[type(layers[n])] == node.op_type
            ]
            if len(matched) != 1:
                continue
        # A layer called several times (CARN-M shares its residual blocks) maps to every call: the
        # simulation applies one quantizer to each call, so the lowerings do too.
        mapping.setdefault(matched[0], []).append(node.name)
    return mapping


def export_float_onnx(
    model: nn.Module,
    *,
    scale: int | None = None,
    in_channels: int = 3,
    sample_hw: tuple[int, int] = (24, 24),
    opset: int = OPSET,
) -> onnx.ModelProto:
    """Export an FP model ([0,1] NCHW float32 in and out) to a float ONNX graph with a layer map.

    Args:
        model: the float network (QuantLayer wrappers are removed first, see `unwrap_quant_layers`).
        scale: upscaling factor, recorded as `drq.scale` metadata when given.
        in_channels: channels of the LR input.
        sample_hw: spatial size of the tracing input (any size works afterwards: N/H/W are dynamic).
        opset: ONNX opset (>= 13 for per-axis QuantizeLinear/DequantizeLinear).

    Returns:
        The checked, shape-inferred float graph.

    Raises:
        ExportError: the model cannot be traced or the result fails the ONNX checker.
    """
    if opset < 13:
        raise ExportError(f"opset {opset}: per-axis QuantizeLinear/DequantizeLinear needs opset >= 13")
    model = unwrap_quant_layers(model).eval().float().cpu()
    sample = torch.rand(1, in_channels, *sample_hw, generator=torch.Generator().manual_seed(0))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(
                model,
                (sample,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                do_constant_folding=True,
                dynamic_axes={INPUT_NAME: {0: "N", 2: "H", 3: "W"}, OUTPUT_NAME: {0: "N", 2: "SH", 3: "SW"}},
            )
    except Exception as err:  # the exporter raises many unrelated types for untraceable models
        raise ExportError(
            f"model {type(model).__name__}: torch.onnx.export failed ({err.__class__.__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from err
    onnx_model = onnx.load_from_string(buffer.getvalue())
    mapping = _map_layers(onnx_model, _layers(model))
    meta = {LAYER_MAP_KEY: json.dumps({name: nodes[0] for name, nodes in mapping.items()})}
    shared = {name: nodes for name, nodes in mapping.items() if len(nodes) > 1}
    if shared:
        meta[LAYER_CALLS_KEY] = json.dumps(shared)
    if scale is not None:
        meta[SCALE_KEY] = str(int(scale))
    set_metadata(onnx_model, meta)
    onnx_model.producer_name = "drq"
    return finalize(onnx_model)
