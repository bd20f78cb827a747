"""`drq build`: ONNX -> TensorRT / TensorRT-RTX engine + manifest.

    drq build MODEL.onnx -o MODEL.plan [--backend tensorrt|tensorrt_rtx]
              [--min 1x3x64x64 --opt 1x3x256x256 --max 1x3x540x960] [--workspace-mib N] [--opt-level 0-5]
              [--timing-cache PATH] [--version-compatible] [--hardware-compatible] [--fp16]
              [--int8-calibrator CACHE|RECIPE [--calib DIR]] [--plugins drq] [--compute-capability 8.6 ...]

`--int8-calibrator` takes a calibration cache (`drq calib-cache`) or a recipe JSON, from which the cache
is made for this ONNX model (TensorRT <= 10.x only); with a recipe, `--calib DIR` also observes the
scales of every other tensor TensorRT's INT8 layers read or write (`drq calib-cache --calib`).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from drq.artifacts import check_writable
from drq.cli_args import CommandParser
from drq.manifest import manifest_path
from engine_builder.backends.base import FLAVOURS
from engine_builder.build import BuildConfig, build_engine, check_volume, parse_shape
from engine_builder.errors import BuildError


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq build",
        description="Build a TensorRT or TensorRT-RTX engine from ONNX "
        "and write MODEL.plan.json (the manifest) beside it.",
    )
    p.add_argument("onnx", type=Path, help="ONNX model (drq export)")
    p.add_argument("-o", "--output", type=Path, required=True, help="engine file to write (.plan)")
    p.add_argument("--backend", choices=FLAVOURS, default="tensorrt", help="full TensorRT or TensorRT-RTX")
    p.add_argument("--min", dest="min_shape", help="smallest input NCHW, e.g. 1x3x64x64")
    p.add_argument("--opt", dest="opt_shape", help="input NCHW the kernels are tuned for")
    p.add_argument("--max", dest="max_shape", help="largest input NCHW, e.g. 1x3x540x960")
    p.add_argument("--workspace-mib", type=int, help="workspace memory pool limit in MiB")
    p.add_argument("--opt-level", type=int, help="builder optimization level 0-5 (TensorRT default 3)")
    p.add_argument(
        "--timing-cache",
        type=Path,
        help="tactic timing cache to load and update (full TensorRT; a no-op in TensorRT-RTX, so refused)",
    )
    p.add_argument(
        "--version-compatible",
        action="store_true",
        help="engine runs on later TensorRT releases (full TensorRT >= 8.6; TensorRT-RTX fails it, "
        "so refused)",
    )
    p.add_argument(
        "--hardware-compatible",
        action="store_true",
        help="engine runs on any Ampere or later GPU (full TensorRT >= 8.6; TensorRT-RTX ignores it, so "
        "refused: use --compute-capability)",
    )
    p.add_argument("--fp16", action="store_true", help="TensorRT <= 10.x: allow FP16 kernels (weak typing)")
    p.add_argument(
        "--int8-calibrator",
        type=Path,
        metavar="CACHE|RECIPE",
        help="TensorRT <= 10.x: implicit INT8 with scales from a calibration cache or a recipe",
    )
    p.add_argument(
        "--calib",
        type=Path,
        help="--int8-calibrator RECIPE: HR images whose LR crops give the scales of the non-conv-input "
        "tensors (without it those layers run in float)",
    )
    p.add_argument("--plugins", choices=("drq",), help="register the dual-region TensorRT plugins first")
    p.add_argument(
        "--compute-capability",
        nargs="+",
        default=(),
        metavar="CC",
        help="TensorRT-RTX: target compute capabilities (e.g. 8.6 12.0); default: portable 8.0+",
    )
    return p


def _is_recipe(path: Path) -> bool:
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:4096].lstrip()
    except OSError as err:
        raise BuildError(f"{path}: cannot read ({err.__class__.__name__})") from err
    return head.startswith("{")


def _cache_for(calibrator: Path, onnx_path: Path, workdir: Path, calib: Path | None) -> Path:
    """The calibration cache file: as given, or written from a recipe (+ `calib` images) for this model.

    Raises:
        BuildError: no such file, or --calib given with a cache file (its scales are final).
    """
    if not calibrator.is_file():
        raise BuildError(f"{calibrator}: no such calibration cache or recipe")
    if not _is_recipe(calibrator):
        if calib is not None:
            raise BuildError(f"--calib: {calibrator} is a calibration cache already; give a recipe")
        return calibrator
    import onnx

    from drq.recipe import load_recipe
    from engine_builder.calib_cache import (
        CalibCacheError,
        cache_from_recipe,
        check_model_identity,
        complete_from_images,
        input_tensor_map,
        write_cache,
    )

    recipe = load_recipe(calibrator)
    model = onnx.load(str(onnx_path), load_external_data=False)
    try:
        check_model_identity(recipe, model)
    except CalibCacheError as err:
        raise CalibCacheError(f"{onnx_path}: {err} ({calibrator} is another model's recipe)") from err
    cache = cache_from_recipe(recipe, input_tensor_map(model))
    if calib is not None:
        cache = complete_from_images(cache, model, calib, recipe.model.scale)
    return write_cache(cache, workdir / "calibration.cache")


def _check_output_volume(onnx_path: Path, max_shape: tuple[int, ...] | None) -> None:
    """The SR output is scale^2 times the input: hold it to TensorRT's per-tensor element limit too
    (for a model that declares drq.scale; an unreadable file is reported by the build itself)."""
    if max_shape is None or len(max_shape) != 4 or not onnx_path.is_file():
        return
    import onnx

    try:
        meta = {p.key: p.value for p in onnx.load(str(onnx_path), load_external_data=False).metadata_props}
    except Exception:  # onnx raises DecodeError variants; build_engine reports the file in one line
        return
    scale = meta.get("drq.scale", "")
    if scale.isdigit() and int(scale) > 1:
        n, c, h, w = max_shape
        check_volume(f"--max (its x{scale} output)", (n, c, h * int(scale), w * int(scale)))


def main(argv: list[str]) -> int:
    """Run `drq build`; returns 0 (user errors raise BuildError: one line, exit 2)."""
    args = _parser().parse_args(argv)
    if args.calib is not None and args.int8_calibrator is None:
        raise BuildError("--calib: only with --int8-calibrator RECIPE")
    for output in (args.output, manifest_path(args.output), args.timing_cache):
        if output is not None:
            check_writable(output)
    shapes = [
        None if s is None else parse_shape(s, f"--{n}")
        for n, s in (("min", args.min_shape), ("opt", args.opt_shape), ("max", args.max_shape))
    ]
    _check_output_volume(args.onnx, shapes[2])
    with tempfile.TemporaryDirectory(prefix="drq-build-") as tmp:
        cache = (
            None
            if args.int8_calibrator is None
            else _cache_for(args.int8_calibrator, args.onnx, Path(tmp), args.calib)
        )
        config = BuildConfig(
            onnx=args.onnx,
            output=args.output,
            backend=args.backend,
            min_shape=shapes[0],
            opt_shape=shapes[1],
            max_shape=shapes[2],
            workspace_mib=args.workspace_mib,
            optimization_level=args.opt_level,
            timing_cache=args.timing_cache,
            version_compatible=args.version_compatible,
            hardware_compatible=args.hardware_compatible,
            fp16=args.fp16,
            calib_cache=cache,
            plugins=args.plugins,
            compute_capabilities=tuple(args.compute_capability),
        )
        result = build_engine(config)
    m = result.manifest
    unique = list(dict.fromkeys(result.warnings))
    for warning in unique[:5]:
        print(f"warning: TensorRT: {warning}")
    if len(unique) > 5:
        print(f"warning: TensorRT: ({len(unique) - 5} more warnings)")
    print(
        f"wrote {result.engine} ({result.engine.stat().st_size / 1e6:.2f} MB, "
        f"{m.flavour} {m.tensorrt_version}, "
        f"{m.device} sm {m.compute_capability}, {m.build_seconds:.1f} s) and {result.manifest_file.name}"
        + (f"; timing cache {config.timing_cache}" if result.timing_cache_saved else "")
    )
    print(json.dumps({"profile": m.profile.describe(), "lowering": m.lowering or "?"}))
    if result.layers_note:
        print(f"note: {result.layers_note}")
    return 0
