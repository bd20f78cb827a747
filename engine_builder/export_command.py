"""`drq export`: lower a recipe (or an FP checkpoint) to an ONNX file.

    drq export --recipe R [--weights W] [--lowering L] -o model.onnx [--io-dtype fp32|fp16]
               [--target tensorrt|ort-cpu [--calib DIR]] [--glue fp16|fp32] [--outlier-channels-only]
    drq export --arch A --weights W --scale S [--lowering fp32|fp16] -o model.onnx

torch is imported only when the command runs (`drq --help` stays torch-free). The output is written
atomically and may never be one of the inputs. Quantizing lowerings for `--target tensorrt` get FP16
glue by default (`engine_builder.lowerings.fp16_glue`: every non-quantized op in float16, casts only at
the I/O); `--glue fp32` keeps the float32 glue, and `--target ort-cpu` always does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from drq.artifacts import check_writable
from drq.cli_args import CommandParser
from engine_builder.errors import ExportError


def _parser() -> argparse.ArgumentParser:
    from engine_builder.lowerings.registry import LOWERINGS

    parser = CommandParser(
        prog="drq export",
        description="Export a model to ONNX, lowered for TensorRT (or onnxruntime). With --recipe the "
        "weights come from --weights or the recipe's checkpoint path (sha256 checked); the default "
        "lowering follows the recipe's budget (uniform INT8: qdq, split: drq-split, b-bit: drq-plugin, "
        "else fakequant). Without a recipe give --arch/--weights/--scale and fp32 or fp16.",
    )
    parser.add_argument("--recipe", type=Path, help="recipe JSON from `drq quantize`")
    parser.add_argument("--arch", help="architecture (FP export without a recipe)")
    parser.add_argument("--weights", type=Path, help="checkpoint (.pth); with --recipe overrides its path")
    parser.add_argument("--scale", type=int, help="upscaling factor (FP export)")
    parser.add_argument("--lowering", choices=list(LOWERINGS), help="how to lower (default: from the recipe)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="ONNX file to write")
    parser.add_argument(
        "--io-dtype",
        choices=("fp32", "fp16"),
        default="fp32",
        help="I/O type of the fp16 lowering and of FP16-glue graphs",
    )
    parser.add_argument(
        "--glue",
        choices=("fp16", "fp32"),
        help="precision of the non-quantized ops around the INT8 convs (default: fp16 for --target "
        "tensorrt and a quantizing lowering, else fp32)",
    )
    parser.add_argument(
        "--target",
        choices=("tensorrt", "ort-cpu"),
        default="tensorrt",
        help="ort-cpu: integer convs onnxruntime's CPU kernels run (qdq, drq-split)",
    )
    parser.add_argument(
        "--calib",
        type=Path,
        help="--target ort-cpu: HR images whose LR crops give the conv "
        "output ranges onnxruntime's QLinearConv needs",
    )
    parser.add_argument(
        "--ort-weights",
        choices=("uint8", "int8", "int7"),
        default="uint8",
        help="--target ort-cpu: QLinearConv weight storage; uint8 exact everywhere (default), int8 fastest "
        "but saturating on x86 without VNNI, int7 fast and exact (7-bit weights)",
    )
    parser.add_argument(
        "--outlier-channels-only",
        action="store_true",
        help="drq-split: outlier branch only on the recipe's outlier channels",
    )
    return parser


def _same_file(a: Path, b: Path | None) -> bool:
    return b is not None and a.resolve() == b.resolve()


def _options(args: argparse.Namespace, lowering: str):
    """The lowering options of this export; FP16 glue by default where it applies (module docstring)."""
    from engine_builder.lowerings.common import LoweringOptions
    from engine_builder.lowerings.registry import takes_fp16_glue

    glue = args.glue or ("fp16" if args.target == "tensorrt" and takes_fp16_glue(lowering) else "fp32")
    if args.io_dtype == "fp16" and glue != "fp16" and lowering != "fp16":
        raise ExportError(
            f"--io-dtype fp16: the {lowering} lowering with {glue} glue has float32 I/O; use --lowering fp16 "
            "or --glue fp16"
        )
    return LoweringOptions(
        io_dtype=args.io_dtype,
        target=args.target,
        outlier_channels_only=args.outlier_channels_only,
        glue=glue,
        ort_weights=args.ort_weights,
    )


def main(argv: list[str]) -> int:
    """Run `drq export`; returns 0 (user errors raise BuildError / CalibError: one line, exit 2)."""
    args = _parser().parse_args(argv)
    check_writable(args.output)
    from engine_builder.lowerings.common import LoweringOptions

    LoweringOptions(io_dtype=args.io_dtype, target=args.target, glue=args.glue or "fp32")  # checks first
    for source in (args.recipe, args.weights):
        if _same_file(args.output, source):
            raise ExportError(f"{args.output}: is an input of this export; choose another output path")
    if args.recipe:
        if args.arch or args.scale:
            raise ExportError("--recipe: the recipe names the model; drop --arch/--scale")
        from drq.recipe import load_recipe, recipe_checkpoint
        from engine_builder.export.pipeline import export_recipe
        from engine_builder.lowerings.registry import default_lowering

        recipe = load_recipe(args.recipe)
        options = _options(args, args.lowering or default_lowering(recipe))
        if args.weights is None and _same_file(args.output, recipe_checkpoint(recipe, args.recipe)):
            raise ExportError(f"{args.output}: is the recipe's checkpoint; choose another output path")
        calib_inputs = None
        if args.target == "ort-cpu" and args.calib is not None:
            from drq.imaging.datasets import calib_crops

            calib_inputs = [c[None] for c in calib_crops(args.calib, recipe.model.scale, 64, 8, seed=0)]
        try:
            model = export_recipe(recipe, args.weights, args.lowering, options, calib_inputs, args.recipe)
        except ExportError as err:
            if not str(err).startswith("recipe"):  # "recipe layer 'x': ..." names no file
                raise
            raise ExportError(f"{args.recipe}: {err}") from err
    else:
        if not (args.arch and args.weights and args.scale):
            raise ExportError("give --recipe, or --arch with --weights and --scale for an FP export")
        from engine_builder.export.pipeline import export_checkpoint

        lowering = args.lowering or "fp32"
        model = export_checkpoint(args.arch, args.weights, args.scale, lowering, _options(args, lowering))
    from drq.artifacts import atomic_write_bytes

    atomic_write_bytes(args.output, model.SerializeToString())
    meta = {p.key: p.value for p in model.metadata_props}
    what = meta.get("drq.lowering", "?") + (", fp16 glue" if meta.get("drq.glue") == "fp16" else "")
    print(f"wrote {args.output} ({what}, {args.output.stat().st_size / 1e6:.2f} MB)")
    return 0
