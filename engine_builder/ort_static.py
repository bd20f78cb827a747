"""onnxruntime's own static quantizer, reproducibly: the CPU reference row, and drq's plan in its graph.

`python -m engine_builder.ort_static --onnx FP32.onnx --calib DIR -o OUT.onnx [--recipe R]`

Without a recipe this is `onnxruntime.quantization.quantize_static` as a CPU user runs it (QDQ format,
per-channel weights, uint8 activations, MinMax over LR crops of `--calib`, drawn by
`drq.imaging.datasets.calib_crops`): every op onnxruntime has an integer kernel for (Conv, Add, Mul,
Concat, Sigmoid, LeakyRelu, pooling, ...) gets Q/DQ, so onnxruntime's QDQ transformer fuses them into
QLinear* kernels and tensors stay uint8 between convs.

With a `mixed` (or uniform INT8) recipe, the same quantizer writes the integer CPU graph of drq's plan:
the recipe's activation scale and zero point on each `int8` conv input and its weight scales are forced
through onnxruntime's `TensorQuantOverrides`; the plan's `split` and `fp16` convs are excluded
(`nodes_to_exclude`: they run as float convs on the CPU, on their float input); the glue ops keep
onnxruntime's MinMax ranges.

`--weight-type`: `int8` is onnxruntime's default (QInt8: U8S8 kernels, which on x86 without VNNI
saturate at int16, see `lowerings.act_graphs.qlinear_conv`); `uint8` is exact everywhere.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from drq.cli_args import CommandParser
from drq.recipe import Recipe, UniformAct
from engine_builder.errors import ExportError, MissingDependency
from engine_builder.lowerings.common import weight_scale_array
from engine_builder.lowerings.graph import INPUT_NAME, layer_nodes, metadata, set_metadata


def _quantization():
    try:
        from onnxruntime import quantization
    except ImportError as err:
        raise MissingDependency("ort_static needs onnxruntime (pip install onnxruntime)") from err
    return quantization


def plan_overrides(model: onnx.ModelProto, recipe: Recipe) -> tuple[dict[str, list[dict]], list[str]]:
    """(TensorQuantOverrides for the int8 layers, node names of the split / fp16 layers to exclude).

    Raises:
        ExportError: a recipe layer is not in the graph, or an int8 layer's act is not 8-bit signed.
    """
    q = _quantization()
    nodes = {n.name: n for n in model.graph.node}
    inits = {t.name: t for t in model.graph.initializer}
    mapping = layer_nodes(model)
    overrides: dict[str, list[dict]] = {}
    exclude: list[str] = []
    for name, layer in recipe.layers.items():
        if name not in mapping:
            raise ExportError(f"recipe layer {name!r}: not in the ONNX graph")
        form = recipe.plan.get(name, "int8")
        for node_name in mapping[name]:
            node = nodes[node_name]
            if form != "int8":
                exclude.append(node_name)
                continue
            act = layer.act
            if not isinstance(act, UniformAct) or act.bits != 8 or not act.signed:
                raise ExportError(f"recipe layer {name!r}: int8 needs an 8-bit signed uniform act")
            overrides[node.input[0]] = [
                {
                    "quant_type": q.QuantType.QUInt8,
                    "scale": np.array(act.scale, dtype=np.float32),
                    "zero_point": np.array(128 + act.zero_point, dtype=np.uint8),
                }
            ]
            weight = onnx.numpy_helper.to_array(inits[node.input[1]])
            scale, _ = weight_scale_array(weight, layer.weight, name)
            overrides[node.input[1]] = [
                {"scale": np.array(s, dtype=np.float32), "zero_point": np.array(0, dtype=np.int8)}
                for s in np.atleast_1d(scale)
            ]
    return overrides, exclude


class _Reader:
    """onnxruntime CalibrationDataReader over a list of NCHW float32 arrays."""

    def __init__(self, inputs: Sequence[np.ndarray]) -> None:
        self._items = iter([{INPUT_NAME: np.asarray(x, dtype=np.float32)} for x in inputs])

    def get_next(self):  # noqa: ANN201 (onnxruntime's protocol)
        return next(self._items, None)


def static_quantize(
    model: onnx.ModelProto,
    inputs: Sequence[np.ndarray],
    weight_type: str = "int8",
    recipe: Recipe | None = None,
    op_types: Sequence[str] | None = None,
) -> onnx.ModelProto:
    """onnxruntime's `quantize_static` over `model` (module docstring); drq metadata kept.

    Raises:
        ExportError: no calibration input, or a recipe that does not fit the graph.
    """
    q = _quantization()
    if not inputs:
        raise ExportError("ort_static: needs at least one calibration crop")
    overrides, exclude = plan_overrides(model, recipe) if recipe is not None else ({}, [])
    wtype = q.QuantType.QUInt8 if weight_type == "uint8" else q.QuantType.QInt8
    if weight_type == "uint8":
        for key, value in overrides.items():
            if "quant_type" not in value[0]:  # weights: the same scales, codes + 128
                overrides[key] = [
                    {"scale": v["scale"], "zero_point": np.array(128, dtype=np.uint8)} for v in value
                ]
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "quant.onnx"
        onnx.save(model, str(src))
        q.quantize_static(
            str(src),
            str(dst),
            _Reader(inputs),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=wtype,
            calibrate_method=q.CalibrationMethod.MinMax,
            nodes_to_exclude=exclude,
            op_types_to_quantize=list(op_types) if op_types else None,
            extra_options={"TensorQuantOverrides": overrides} if overrides else {},
        )
        out = onnx.load(str(dst))
    meta = metadata(model)
    meta["drq.lowering"] = "ort-static" + ("-plan" if recipe is not None else "")
    set_metadata(out, meta)
    return out


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="python -m engine_builder.ort_static", description=__doc__.splitlines()[0])
    p.add_argument("--onnx", type=Path, required=True, help="FP32 graph from drq export")
    p.add_argument("--calib", type=Path, required=True, help="HR calibration images (LR crops by bicubic)")
    p.add_argument("--recipe", type=Path, help="mixed / uniform INT8 recipe whose scales to force")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--crop", type=int, default=80)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weight-type", choices=("int8", "uint8"), default="int8")
    p.add_argument(
        "--op-types", nargs="+", help="op types to quantize (default: every type onnxruntime can quantize)"
    )
    p.add_argument("-o", "--output", type=Path, required=True)
    return p


def main(argv: list[str] | None = None) -> int:
    from drq.artifacts import atomic_write_bytes
    from drq.imaging.datasets import calib_crops
    from drq.recipe import load_recipe

    args = _parser().parse_args(argv)
    model = onnx.load(str(args.onnx))
    scale = int(metadata(model).get("drq.scale", "0"))
    if not scale:
        raise ExportError(f"{args.onnx}: no drq.scale metadata; export it with drq export")
    recipe = load_recipe(args.recipe) if args.recipe else None
    crops = [c[None] for c in calib_crops(args.calib, scale, args.crop, args.images, args.seed)]
    out = static_quantize(model, crops, args.weight_type, recipe, args.op_types)
    atomic_write_bytes(args.output, out.SerializeToString())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    import sys

    from drq.errors import DrqError

    try:
        sys.exit(main())
    except DrqError as err:
        print(f"ort_static: {err}", file=sys.stderr)
        sys.exit(2)
