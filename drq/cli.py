"""The `drq` command: a registry of subcommands named as strings, imported only when invoked.

`drq --help` therefore works without torch, TensorRT or onnxruntime installed (Polygraphy's tool
registry does the same). Each subcommand is `main(argv: list[str]) -> int` in its own module.
User errors (`drq.errors.DrqError`, the base of every package's errors) become one stderr line and
exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class Subcommand:
    target: str  # "package.module:function"
    summary: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "quantize": Subcommand(
        "calib.quantize_command:main", "calibrate a model and write a recipe (PTQ, optional SAFT)"
    ),
    "eval": Subcommand(
        "engine_builder.eval_command:main",
        "PSNR/SSIM-Y of a checkpoint, a recipe (simulated) or an ONNX model",
    ),
    "upscale": Subcommand(
        "serve.upscale_command:main", "super-resolve image files with an ONNX model or an engine (no torch)"
    ),
    "zoo": Subcommand(
        "calib.zoo_command:main", "evaluate every pretrained model of the zoo (FP32) into a results table"
    ),
    "report": Subcommand("calib.report:main", "the PTQ results grid: methods x bits x budgets x datasets"),
    "ablate": Subcommand(
        "calib.ablate_command:main", "single-layer and W/A ablations of a low-bit model: where the PSNR goes"
    ),
    "export": Subcommand("engine_builder.export_command:main", "lower a recipe (or FP model) to ONNX"),
    "build": Subcommand(
        "engine_builder.build_command:main", "build a TensorRT / TensorRT-RTX engine from ONNX"
    ),
    "bench": Subcommand(
        "engine_builder.bench_command:main", "latency / throughput / PSNR of lowerings side by side"
    ),
    "inspect": Subcommand(
        "engine_builder.inspect_command:main",
        "per-layer precision, MACs and bytes of an ONNX or engine vs FP16",
    ),
    "calib-cache": Subcommand(
        "engine_builder.calib_cache_command:main", "write a TensorRT calibration cache from a recipe"
    ),
    "plugin-bench": Subcommand(
        "engine_builder.plugin_bench:main", "memory traffic and PSNR of the dual-region plugin path"
    ),
    "kernels": Subcommand("plugins.cli:main", "compile the dual-region Triton kernels to PTX, or check them"),
    "triton-repo": Subcommand(
        "serve.triton_repo_command:main", "write a Triton Inference Server model repository for a model"
    ),
    "serve": Subcommand("serve.serve_command:main", "serve a model with a real Triton Inference Server"),
}


def _usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [
        "usage: drq <command> [options]",
        "",
        "Deploy super-resolution networks at low precision.",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {cmd.summary}" for name, cmd in SUBCOMMANDS.items()]
    lines += ["", "Run 'drq <command> --help' for the options of one command."]
    return "\n".join(lines)


def _apply_pixel_limit_from_environment() -> None:
    """DRQ_MAX_PIXELS (else the default) sets the image pixel limit of every command run by `main`."""
    import os

    from drq.errors import ImageError
    from drq.imaging.io import DEFAULT_MAX_PIXELS, set_pixel_limit

    value = os.environ.get("DRQ_MAX_PIXELS", str(DEFAULT_MAX_PIXELS)).strip()
    if not value.isdigit() or int(value) < 1:
        raise ImageError(f"DRQ_MAX_PIXELS: must be a positive number of pixels, got {value!r}")
    set_pixel_limit(int(value))


def main(argv: list[str] | None = None) -> int:
    """Dispatch `drq <command> ...`; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        print("drq 0.1.0")
        return 0
    name, rest = args[0], args[1:]
    command = SUBCOMMANDS.get(name)
    if command is None:
        print(f"drq: unknown command {name!r}; choose from {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    module_name, func_name = command.target.split(":")
    from drq.errors import DrqError

    previous = _sigterm_unwinds()
    try:
        _apply_pixel_limit_from_environment()
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(rest) or 0)
    except DrqError as err:
        print(f"drq {name}: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"drq {name}: interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _sigterm_unwinds() -> signal.Handlers | None:
    """Make SIGTERM unwind like Ctrl-C while a command runs, so `finally` blocks remove temp files and
    folders (a default SIGTERM kills the process where it stands); returns the handler to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _raise_interrupt)
    return previous


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
