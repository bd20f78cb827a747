"""`drq kernels`: compile the dual-region Triton kernels to PTX (no GPU needed), or time them on a GPU."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from drq.cli_args import CommandParser
from plugins.aot import ARCHS, parse_arch


def _parser() -> argparse.ArgumentParser:
    parser = CommandParser(prog="drq kernels", description=__doc__)
    parser.add_argument("--out", type=Path, help="folder for <kernel>_<dtype>_sm<cc>.ptx and manifest.json")
    parser.add_argument(
        "--arch",
        nargs="+",
        default=[f"sm_{a}" for a in ARCHS],
        help="compute capabilities (default: %(default)s)",
    )
    parser.add_argument(
        "--bench",
        action="store_true",
        help="time both kernels vs device-to-device copy on the current CUDA GPU (prints JSON)",
    )
    parser.add_argument("--size-mb", type=int, default=256, help="MiB of int8 codes for --bench")
    parser.add_argument("--iters", type=int, default=20, help="timed iterations for --bench")
    return parser


def main(argv: list[str]) -> int:
    """Entry point of `drq kernels`; returns the exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.out is None and not args.bench:
        parser.error("give --out DIR (compile PTX) and/or --bench (GPU benchmark)")
    if args.out is not None:
        from drq.artifacts import check_writable_folder
        from plugins.aot import write_kernels

        check_writable_folder(args.out)

        archs = tuple(parse_arch(a) for a in args.arch)
        manifest = write_kernels(args.out, archs=archs)
        count = len(json.loads(manifest.read_text(encoding="utf-8"))["kernels"])
        print(f"wrote {count} PTX kernels for {', '.join(f'sm_{a}' for a in archs)} and {manifest}")
    if args.bench:
        from plugins.gpu_bench import BenchConfig, run_benchmark

        print(json.dumps(run_benchmark(BenchConfig(size_mb=args.size_mb, iters=args.iters)), indent=2))
    return 0
