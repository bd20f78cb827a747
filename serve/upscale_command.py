"""`drq upscale`: super-resolve image files with an exported ONNX model or a built engine, without torch.

This is the production path: onnxruntime (CPU, or its CUDA provider) or a TensorRT / TensorRT-RTX engine,
numpy and Pillow. Every output is a PNG written atomically into the output folder; inputs are never
overwritten, and an existing output is only replaced with `--overwrite`.

Every input's header is checked (readable, supported mode, within the pixel limit `--max-pixels`) before
anything is written, so a bad image in a folder stops the run with no output written. Images larger
than the tile are tiled (`serve.tiling`, rule in `serve.tile_options`); `--report-memory` prints the
process's peak resident set size at the end (the memory benchmark in `results/memory/`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from drq.artifacts import check_writable_folder
from drq.cli_args import CommandParser, thread_count
from drq.imaging.datasets import IMAGE_SUFFIXES, list_images
from drq.imaging.io import DEFAULT_MAX_PIXELS, check_image_header, read_image, set_pixel_limit, write_image
from serve.errors import ServeError
from serve.tile_options import TileSettings, add_tiling_arguments, resolve_tiling
from serve.tiling import TilingError, upscale_tiled_pil


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq upscale",
        description="Super-resolve images with an ONNX model (onnxruntime) or a TensorRT engine; "
        "writes <output>/<name>.png for each input. No torch needed.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", type=Path, help="ONNX model from `drq export`")
    source.add_argument("--engine", type=Path, help="engine from `drq build` (its .json manifest beside it)")
    source.add_argument(
        "--server",
        metavar="URL",
        help="a Triton server from `drq serve` (http://HOST:PORT or grpc://HOST:PORT); it tiles itself",
    )
    p.add_argument("--server-timeout", type=float, default=120.0, help="--server: seconds per image at most")
    p.add_argument("inputs", type=Path, nargs="+", help="image files or folders of images")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--threads", type=thread_count, default=0, help="onnxruntime CPU threads (0: its default)")
    p.add_argument("--cuda", action="store_true", help="onnxruntime's CUDA execution provider")
    p.add_argument(
        "--cuda-binding",
        choices=("auto", "cuda-python", "pycuda"),
        default="auto",
        help="CUDA binding of the engine runtime",
    )
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist")
    p.add_argument(
        "--max-pixels",
        type=int,
        help="refuse input images of more pixels, from their header "
        f"(default: DRQ_MAX_PIXELS, else {DEFAULT_MAX_PIXELS})",
    )
    add_tiling_arguments(p)
    p.add_argument("--report-memory", action="store_true", help="print the peak resident set size at the end")
    p.add_argument("--quiet", action="store_true", help="no line per image")
    return p


def collect_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Image files named directly, and the images directly inside named folders, in the given order.

    Raises:
        ServeError: a path is missing or is a file without an image suffix.
        ImageError: a folder holds no image.
    """
    found: list[Path] = []
    for path in inputs:
        if path.is_dir():
            found += list_images(path)
        elif not path.exists():
            raise ServeError(f"{path}: no such file or folder")
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ServeError(f"{path}: not an image file ({', '.join(s[1:] for s in IMAGE_SUFFIXES)})")
        else:
            found.append(path)
    return found


def plan_outputs(images: Sequence[Path], output: Path, overwrite: bool) -> list[Path]:
    """`<output>/<stem>.png` for each image; refuses clashes, inputs as outputs and (unless asked) reuse.

    Raises:
        ServeError: two inputs would write the same file, an output would replace an input, or an output
            exists and `overwrite` is false.
    """
    targets = [output / f"{image.stem}.png" for image in images]
    inputs = {image.resolve() for image in images}
    seen: dict[Path, Path] = {}
    for image, target in zip(images, targets, strict=True):
        resolved = target.resolve()
        if resolved in seen:
            raise ServeError(f"{image}: would write {target}, as {seen[resolved]} does; rename one of them")
        seen[resolved] = image
        if resolved in inputs:
            raise ServeError(f"{target}: refusing to overwrite an input image; choose another --output")
        if target.exists() and not overwrite:
            raise ServeError(f"{target}: exists; pass --overwrite to replace it")
    return targets


def _runner(args: argparse.Namespace):  # -> serve.runtime.base.Runner
    if args.threads < 0:
        raise ServeError(f"--threads: must be >= 0, got {args.threads}")
    if args.onnx is not None:
        if not args.onnx.is_file():
            raise ServeError(f"{args.onnx}: no such ONNX file")
        from serve.runtime.ort import OrtRunner

        return OrtRunner(args.onnx, threads=args.threads or None, cuda=args.cuda, memory_pattern=False)
    if not args.engine.is_file():
        raise ServeError(f"{args.engine}: no such engine file")
    from serve.runtime.trt import TrtRunner

    return TrtRunner(args.engine, cuda=args.cuda_binding)


def _tiling(args: argparse.Namespace, runner) -> tuple[TileSettings, int | None]:
    """The tile settings and the declared scale (ONNX metadata `drq.scale`; None: taken from the output)."""
    if args.onnx is not None:
        meta = runner.session.get_modelmeta().custom_metadata_map
        declared = meta.get("drq.scale", "")
        return resolve_tiling(args, args.onnx), int(declared) if declared.isdigit() else None
    manifest = runner.manifest
    return resolve_tiling(args, args.engine.parent / manifest.onnx, manifest.profile.max), None


# Options of the local runners. With --server, tiling and the runtime are the server's (set when its
# repository was made by `drq triton-repo`), so a value given here would be silently ignored; it is
# refused instead.
_LOCAL_ONLY = ("tile", "overlap", "batch", "threads", "cuda", "cuda_binding")


def check_source_options(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse options that the chosen source does not use (any value other than `parser`'s default).

    Raises:
        ServeError: a local-runner option with --server, or --server-timeout without it.
    """
    if not args.server:
        if args.server_timeout != parser.get_default("server_timeout"):
            raise ServeError("--server-timeout: only used with --server")
        return
    for name in _LOCAL_ONLY:
        if getattr(args, name) != parser.get_default(name):
            flag = "--" + name.replace("_", "-")
            raise ServeError(
                f"{flag}: not used with --server (the server tiles and runs with the settings of its "
                "repository, made by `drq triton-repo`)"
            )


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (`ru_maxrss`, KiB on Linux)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _upscale_all(args, runner, images: Sequence[Path], targets: Sequence[Path]) -> None:
    settings, scale = _tiling(args, runner)
    if settings.note and not args.quiet:
        print(f"note: {settings.note}", flush=True)
    for image, target in zip(images, targets, strict=True):
        lr = read_image(image)
        t0 = time.perf_counter()
        try:
            sr = upscale_tiled_pil(runner.run, lr, scale, settings.tile, settings.overlap, settings.batch)
        except TilingError as err:  # the runner's output shape: name the model, not "runner"
            model = args.onnx or args.engine
            raise ServeError(f"{model}: {str(err).removeprefix('runner: ')}") from err
        seconds = time.perf_counter() - t0
        write_image(target, sr)
        if not args.quiet:
            h, w = lr.shape[:2]
            print(f"{image} ({w}x{h}) -> {target} ({sr.width}x{sr.height}, {seconds:.3f} s)", flush=True)
        del lr, sr


def main(argv: list[str]) -> int:
    """Entry point of `drq upscale`."""
    parser = _parser()
    args = parser.parse_args(argv)
    check_source_options(args, parser)
    if args.max_pixels is not None:
        set_pixel_limit(args.max_pixels)
    images = collect_inputs(args.inputs)
    for image in images:  # header, mode, size and pixel limit of every input before any output
        check_image_header(image)
    check_writable_folder(args.output)
    targets = plan_outputs(images, args.output, args.overwrite)
    if args.server:
        from serve.triton.client import upscale_files

        upscale_files(args.server, images, targets, args.server_timeout, args.quiet)
        if args.report_memory:
            print(f"peak RSS {peak_rss_mib():.0f} MiB")
        return 0
    runner = _runner(args)
    started = time.perf_counter()
    try:
        _upscale_all(args, runner, images, targets)
    finally:
        runner.close()
    if not args.quiet:
        print(f"{len(images)} images in {time.perf_counter() - started:.2f} s")
    if args.report_memory:
        print(f"peak RSS {peak_rss_mib():.0f} MiB")
    return 0
