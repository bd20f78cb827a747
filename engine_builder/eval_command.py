"""`drq eval`: PSNR/SSIM-Y of an FP checkpoint, a recipe (fake-quant in torch) or an ONNX model.

The ONNX path is torch-free (onnxruntime + numpy), so it runs in a production image; the checkpoint and
recipe paths import torch lazily.

Memory: every image is checked against the pixel limit (`--max-pixels`, default 16 M pixels) from its
header when the dataset is opened, before any inference. With `--onnx`, an LR image larger than the tile
(`--tile`, default 256) runs tiled (`serve.tiling`, rule in `serve.tile_options`), so onnxruntime never
sees more than one tile; smaller images (every benchmark image) run whole, exactly as before.
`--tile N` forces smaller tiles, which is how `results/tiling/` measures the PSNR cost of tiling.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from drq.artifacts import atomic_write_text, check_writable
from drq.cli_args import CommandParser, thread_count
from drq.imaging.datasets import open_dataset
from drq.imaging.evaluate import DatasetResult, evaluate_dataset
from drq.imaging.io import DEFAULT_MAX_PIXELS, from_nchw_float, set_pixel_limit
from drq.imaging.progress import Progress
from serve.errors import ServeError
from serve.tile_options import add_tiling_arguments, resolve_tiling
from serve.tiling import upscale_tiled

Upscale = Callable[[np.ndarray], np.ndarray]


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="drq eval",
        description="Evaluate PSNR/SSIM on the Y channel exactly as SR papers do (scale-pixel border "
        "cropped, SR clamped and rounded to uint8, 11x11 Gaussian SSIM). Give one model source: "
        "--arch/--weights/--scale (FP32 torch), --recipe (simulated quantized model in torch) or --onnx "
        "(onnxruntime on the CPU, no torch needed).",
    )
    source = parser.add_argument_group("model source (choose one)")
    source.add_argument("--arch", help="architecture name (see `drq zoo --help` for the list)")
    source.add_argument(
        "--weights", type=Path, help="checkpoint (.pth state_dict); with --recipe, overrides its path"
    )
    source.add_argument("--recipe", type=Path, help="recipe JSON from `drq quantize`")
    source.add_argument("--onnx", type=Path, help="ONNX model from `drq export`")
    parser.add_argument(
        "--scale", type=int, help="upscaling factor (read from the recipe or ONNX metadata if omitted)"
    )
    parser.add_argument(
        "--data",
        type=Path,
        action="append",
        required=True,
        help="dataset folder: HR/ + LR/ with the same names, or a folder of HR images (repeatable)",
    )
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--threads", type=thread_count, default=0, help="CPU threads (0: library default)")
    parser.add_argument(
        "--max-pixels",
        type=int,
        help="refuse images of more pixels, from their header "
        f"(default: DRQ_MAX_PIXELS, else {DEFAULT_MAX_PIXELS})",
    )
    add_tiling_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _onnx_scale(path: Path) -> int | None:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises several unrelated types for a bad file
        raise ServeError(f"{path}: not a readable ONNX model ({err.__class__.__name__})") from err
    meta = {p.key: p.value for p in model.metadata_props}
    value = meta.get("drq.scale")
    return int(value) if value and value.isdigit() else None


def _resolve(args: argparse.Namespace) -> tuple[Upscale, int, dict[str, object]]:
    """The upscale function, the scale, and a description of the model for the JSON."""
    chosen = [name for name in ("arch", "recipe", "onnx") if getattr(args, name)]
    if len(chosen) != 1:
        raise ServeError("give exactly one of --arch (with --weights), --recipe or --onnx")
    if args.threads:
        _set_torch_threads_if_loaded(args.threads)
    if args.onnx:
        if not args.onnx.is_file():
            raise ServeError(f"{args.onnx}: no such ONNX file")
        scale = args.scale or _onnx_scale(args.onnx)
        if not scale:
            raise ServeError(f"{args.onnx}: no drq.scale in the model's metadata; pass --scale")
        from serve.runtime.ort import OrtRunner

        runner = OrtRunner(args.onnx, threads=args.threads or None, memory_pattern=False)
        upscale, tiling = _tiled_onnx(args, runner, scale)
        return upscale, scale, {"onnx": str(args.onnx), **tiling}
    if args.recipe:
        from calib.inference import torch_upscaler
        from calib.simulate import load_simulated_model
        from drq.recipe import load_recipe

        _set_torch_threads(args.threads)
        recipe = load_recipe(args.recipe)
        if args.scale and args.scale != recipe.model.scale:
            raise ServeError(f"{args.recipe}: recipe is for x{recipe.model.scale}, not --scale {args.scale}")
        model = load_simulated_model(recipe, args.weights, args.recipe)
        return (
            torch_upscaler(model),
            recipe.model.scale,
            {"recipe": str(args.recipe), "recipe_sha256": recipe.sha256()},
        )
    if args.weights is None or args.scale is None:
        raise ServeError("--arch needs --weights and --scale")
    from calib.inference import torch_upscaler
    from calib.models import load_pretrained

    _set_torch_threads(args.threads)
    loaded = load_pretrained(args.arch, args.scale, args.weights)
    return (
        torch_upscaler(loaded.model),
        args.scale,
        {"arch": args.arch, "weights": str(args.weights), "checkpoint_sha256": loaded.checkpoint_sha256},
    )


def _tiled_onnx(args: argparse.Namespace, runner, scale: int) -> tuple[Upscale, dict[str, object]]:
    """The ONNX runner, tiling LR images larger than the tile (the tiling rule of serve.tile_options)."""
    settings = resolve_tiling(args, args.onnx)
    if settings.note and not args.quiet:
        print(f"note: {settings.note}", file=sys.stderr, flush=True)
    tile_h, tile_w = settings.tile

    def upscale(x: np.ndarray) -> np.ndarray:
        if x.shape[2] <= tile_h and x.shape[3] <= tile_w:
            return runner.run(x)
        # from_nchw_float inverts to_nchw_float exactly (v / 255 * 255 rounds back to v).
        image = from_nchw_float(x)
        return upscale_tiled(runner.run, image, scale, settings.tile, settings.overlap, settings.batch)

    info: dict[str, object] = {"tile": list(settings.tile), "overlap": settings.overlap}
    if settings.field is not None:
        info["receptive_field"] = settings.field.radius
        info["tiling_exact"] = settings.field.exact
    return upscale, info


def _set_torch_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _set_torch_threads_if_loaded(threads: int) -> None:
    if "torch" in sys.modules:
        _set_torch_threads(threads)


def format_row(result: DatasetResult) -> str:
    return (
        f"{result.name:<12} {result.images:>6} {result.psnr:>9.4f} {result.ssim:>8.4f} {result.seconds:>9.2f}"
    )


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.max_pixels is not None:
        set_pixel_limit(args.max_pixels)
    if args.scale is not None and args.scale < 1:
        raise ServeError(f"--scale: must be >= 1, got {args.scale}")
    if args.json is not None:
        check_writable(args.json)
        for given in (args.weights, args.recipe, args.onnx, *args.data):
            if given is not None and args.json.resolve() == Path(given).resolve():
                raise ServeError(f"{args.json}: refusing to overwrite an input; choose another --json path")
    # Open every dataset first: a bad folder fails before minutes of inference.
    upscale, scale, model_info = _resolve(args)
    datasets = [open_dataset(path, scale) for path in args.data]
    print(f"{'dataset':<12} {'images':>6} {'PSNR-Y':>9} {'SSIM-Y':>8} {'seconds':>9}")
    results = []
    started = time.perf_counter()
    for dataset in datasets:
        progress = None if args.quiet else Progress(len(dataset), dataset.name)
        result = evaluate_dataset(upscale, dataset, scale, progress)
        if progress is not None:
            progress.close()
        results.append(result)
        print(format_row(result), flush=True)
    if args.json is not None:
        payload = {
            "command": "drq eval " + " ".join(argv),
            "scale": scale,
            "model": model_info,
            "seconds": time.perf_counter() - started,
            "results": [r.to_dict() for r in results],
        }
        atomic_write_text(args.json, json.dumps(payload, indent=1) + "\n")
    return 0
