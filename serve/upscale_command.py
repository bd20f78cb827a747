"""`drq upscale`: super-resolve image files with an exported ONNX model or a built engine, without torch.

This is the production path: onnxruntime (CPU, or its CUDA provider) or a TensorRT / TensorRT-RTX engine,
numpy and Pillow. Every output is a PNG written atomically into the output folder; inputs are never
overwritten, and an existing output is only replaced with `--overwrite`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from drq.artifacts import check_writable_folder
from drq.cli_args import CommandParser, thread_count
from drq.imaging.datasets import IMAGE_SUFFIXES, list_images
from drq.imaging.io import check_image_header, from_nchw_float, read_image, to_nchw_float, write_image
from serve.errors import ServeError
from serve.runtime.signature import check_upscaled


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq upscale",
        description="Super-resolve images with an ONNX model (onnxruntime) or a TensorRT engine; "
        "writes <output>/<name>.png for each input. No torch needed.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", type=Path, help="ONNX model from `drq export`")
    source.add_argument("--engine", type=Path, help="engine from `drq build` (its .json manifest beside it)")
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

        return OrtRunner(args.onnx, threads=args.threads or None, cuda=args.cuda)
    if not args.engine.is_file():
        raise ServeError(f"{args.engine}: no such engine file")
    from serve.runtime.trt import TrtRunner

    return TrtRunner(args.engine, cuda=args.cuda_binding)


def _declared_scale(onnx_path: Path) -> int | None:
    """The `drq.scale` metadata `drq export` writes; None for an ONNX file without it."""
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception:  # onnxruntime already loaded it; a metadata read failure only loses the check
        return None
    value = next((p.value for p in model.metadata_props if p.key == "drq.scale"), "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _observed_scale(model: Path, lr_shape: Sequence[int], sr_shape: Sequence[int]) -> int:
    """The factor of a model that does not declare one: the first output's height over the input's
    (`check_upscaled` then holds every image, the first included, to it in both axes)."""
    if len(sr_shape) != 4 or sr_shape[2] % lr_shape[2] or sr_shape[2] < lr_shape[2]:
        raise ServeError(
            f"{model}: output shape {tuple(sr_shape)} is not a whole multiple of {tuple(lr_shape)}"
        )
    return sr_shape[2] // lr_shape[2]


def main(argv: list[str]) -> int:
    """Entry point of `drq upscale`."""
    args = _parser().parse_args(argv)
    images = collect_inputs(args.inputs)
    for image in images:  # every input before any output: a bad file must not leave half a batch
        check_image_header(image)
    check_writable_folder(args.output)
    targets = plan_outputs(images, args.output, args.overwrite)
    runner = _runner(args)
    scale = _declared_scale(args.onnx) if args.onnx is not None else None
    started = time.perf_counter()
    try:
        for image, target in zip(images, targets, strict=True):
            lr = read_image(image)
            t0 = time.perf_counter()
            x = to_nchw_float(lr)
            y = runner.run(x)
            scale = scale or _observed_scale(args.onnx or args.engine, x.shape, y.shape)
            check_upscaled(str(args.onnx or args.engine), x.shape, y.shape, scale)
            sr = from_nchw_float(y)
            seconds = time.perf_counter() - t0
            write_image(target, sr)
            if not args.quiet:
                h, w = lr.shape[:2]
                print(
                    f"{image} ({w}x{h}) -> {target} ({sr.shape[1]}x{sr.shape[0]}, {seconds:.3f} s)",
                    flush=True,
                )
    finally:
        runner.close()
    if not args.quiet:
        print(f"{len(images)} images in {time.perf_counter() - started:.2f} s")
    return 0
