"""`drq calib-cache`: write a TensorRT calibration cache (TensorRT <= 10.x implicit INT8) from a recipe.

    drq calib-cache --recipe R --onnx MODEL.onnx -o cache.txt [--calib DIR [--images N]]
                    [--algorithm entropy2|minmax] [--tensorrt-version 10.8.0] [--on-conflict error|max]

MODEL.onnx is the float graph of the recipe's model (`drq export --recipe R --lowering fp32`); the cache
keys are its tensor names. The recipe gives the conv inputs' scales. TensorRT keeps a layer in INT8 only
when every tensor it reads and writes has a scale, so `--calib` runs the float ONNX in onnxruntime over
LR crops of those images and adds max|x| / 127 for every other input and output of an INT8-eligible
layer (`calib_cache.int8_tensors`: conv outputs, residual Adds, Concats, activations, pooling,
DepthToSpace); without it the cache holds the conv inputs only and the command says how many tensors
lack a scale. Why here and not in the recipe: those tensors exist only in the ONNX graph (a functional
add or cat is no torch module to hook), and the cache is keyed by ONNX tensor names, so the float
graph is what is observed; the ranges are the same `ort_cpu.observe_tensor_ranges` the ort-cpu target
uses. The file is also what ModelOpt's `calibration_cache_path` reads
(with `op_types_to_quantize=["Conv", "ConvTranspose"]`: our cache has conv inputs only, and ModelOpt
would otherwise also quantize residual Adds it has no scale for; `high_precision_dtype="fp32"` keeps
the scales exact instead of rounding them to float16).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drq.artifacts import check_writable
from drq.cli_args import CommandParser
from engine_builder.calib_cache import ALGORITHMS, DEFAULT_VERSION


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq calib-cache",
        description="Write a TensorRT calibration cache from a "
        "uniform symmetric 8-bit recipe, keyed by the float ONNX graph's conv inputs.",
    )
    p.add_argument("--recipe", type=Path, required=True, help="recipe JSON (drq quantize)")
    p.add_argument("--onnx", type=Path, required=True, help="float ONNX of the recipe's model (drq export)")
    p.add_argument("-o", "--output", type=Path, required=True, help="cache file to write")
    p.add_argument(
        "--calib",
        type=Path,
        help="HR images whose LR crops give the ranges of every other tensor TensorRT's INT8 layers read "
        "or write (conv outputs, Adds, Concats, activations)",
    )
    p.add_argument("--images", type=int, default=8, help="--calib: number of LR crops (64x64) to observe")
    p.add_argument(
        "--algorithm", choices=ALGORITHMS, default="entropy2", help="calibrator kind of the header"
    )
    p.add_argument(
        "--tensorrt-version",
        default=DEFAULT_VERSION,
        help="version in the header (drq build rewrites it to the running TensorRT's)",
    )
    p.add_argument(
        "--on-conflict",
        choices=("error", "max"),
        default="error",
        help="two layers reading one tensor with different scales: fail, or keep the larger",
    )
    return p


def main(argv: list[str]) -> int:
    """Run `drq calib-cache`; returns 0 (user errors raise one line, exit 2)."""
    args = _parser().parse_args(argv)
    check_writable(args.output)
    import onnx

    from drq.recipe import load_recipe
    from engine_builder.calib_cache import (
        CalibCacheError,
        cache_from_recipe,
        check_model_identity,
        complete_from_images,
        input_tensor_map,
        missing_int8_tensors,
        modelopt_misread_tensors,
        version_code,
        write_cache,
    )

    try:
        version_code(args.tensorrt_version)
    except CalibCacheError as err:
        raise CalibCacheError(f"--tensorrt-version: {err}") from err

    for source in (args.recipe, args.onnx):
        if args.output.resolve() == source.resolve():
            raise CalibCacheError(f"{args.output}: is an input of this command; choose another output path")
    recipe = load_recipe(args.recipe)
    try:
        model = onnx.load(str(args.onnx), load_external_data=False)
    except FileNotFoundError as err:
        raise CalibCacheError(f"{args.onnx}: no such ONNX file") from err
    except Exception as err:  # onnx raises DecodeError variants for non-ONNX bytes
        raise CalibCacheError(f"{args.onnx}: not a readable ONNX model ({err.__class__.__name__})") from err
    try:
        check_model_identity(recipe, model)
        names = input_tensor_map(model)
        cache = cache_from_recipe(
            recipe,
            names,
            algorithm=args.algorithm,
            version=args.tensorrt_version,
            on_conflict=args.on_conflict,
        )
    except CalibCacheError as err:
        source = args.recipe if str(err).startswith("recipe") else args.onnx
        raise CalibCacheError(f"{source}: {err}") from err
    if args.calib is not None:
        cache = complete_from_images(cache, model, args.calib, recipe.model.scale, args.images)
    write_cache(cache, args.output)
    print(f"wrote {args.output} ({cache.header}, {len(cache.scales)} tensors)")
    missing = missing_int8_tensors(cache, model)
    if missing:
        print(
            f"note: {len(missing)} tensor(s) of INT8-eligible layers have no scale (first: {missing[0]}); "
            "TensorRT runs the layers reading or writing them in float; give --calib DIR to observe them"
        )
    misread = modelopt_misread_tensors(cache)
    if misread:
        # TensorRT reads these fine; only ModelOpt's reader drops them, so this is a note, not an error.
        print(
            f"note: ModelOpt's calibration_cache_path reader cannot match {len(misread)} tensor(s) whose "
            f"name contains '_scale' (first: {misread[0]}); their convs stay unquantized there"
        )
    return 0
