"""`drq bench`: latency / throughput (and PSNR) of lowerings side by side.

    CPU (onnxruntime; the embedded default):
      drq bench --onnx fp32=a.onnx qdq=b.onnx drq-split=c.onnx --size 256x256 --threads 2 --repeat 5
                [--warmup 2] [--data ../shared/sr_bench/Set5/x4] [--baseline fp32] [--kernels]
                [--ort-cuda] [--ort-no-nhwc] [-o results/bench/NAME]
    GPU (TensorRT engines, each with its .plan.json manifest):
      drq bench --engine fp16=m_fp16.plan qdq=m_qdq.plan --size 1280x720 --size 960x540
                [--warmup 20] [--iters 200] [--baseline fp16] [--cuda auto|cuda-python|pycuda] [-o STEM]

Sizes are LR WIDTHxHEIGHT. With -o, STEM.json, STEM.md (headed by this command) and STEM.png are written.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from drq.artifacts import check_writable
from drq.cli_args import CommandParser, thread_count
from engine_builder.bench import (
    BenchError,
    bench_engines,
    bench_onnx_cpu,
    parse_named,
    parse_size,
    to_markdown,
    write_report,
)


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq bench",
        description="Time lowerings side by side: ONNX files with "
        "onnxruntime on the CPU, or TensorRT engines on the GPU.",
    )
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--onnx", nargs="+", metavar="NAME=PATH", help="ONNX files to time with onnxruntime (CPU)"
    )
    group.add_argument("--engine", nargs="+", metavar="NAME=PATH", help="TensorRT engines to time (GPU)")
    p.add_argument(
        "--size",
        action="append",
        metavar="WxH",
        help="LR size, repeatable (CPU: one, default 256x256; GPU default 1280x720 and 960x540)",
    )
    p.add_argument("--threads", type=thread_count, default=2, help="CPU: onnxruntime intra-op threads")
    p.add_argument("--repeat", type=int, default=5, help="CPU: timed rounds (median reported)")
    p.add_argument("--warmup", type=int, help="untimed runs first (CPU default 2, GPU default 20)")
    p.add_argument("--iters", type=int, default=200, help="GPU: timed launches per engine and size")
    p.add_argument("--data", type=Path, help="CPU: SR dataset folder (e.g. Set5/x4) for PSNR-Y/SSIM-Y")
    p.add_argument(
        "--kernels",
        action="store_true",
        help="CPU: also profile which onnxruntime kernels each model runs (op types of the optimized "
        "graph and their share of kernel time)",
    )
    p.add_argument(
        "--ort-cuda",
        action="store_true",
        help="run the ONNX files on onnxruntime's CUDA execution provider (GPU without TensorRT; "
        "needs onnxruntime-gpu); timings include session.run's host<->device copies",
    )
    p.add_argument(
        "--ort-no-nhwc",
        action="store_true",
        help="disable onnxruntime's NhwcTransformer in every session: QLinearConv and the ops around it "
        "stay channels-first (the same ONNX files; a runtime setting, not a graph change)",
    )
    p.add_argument("--baseline", help="model the speedups are relative to (default fp32 on CPU, fp16 on GPU)")
    p.add_argument(
        "--cuda", choices=("auto", "cuda-python", "pycuda"), default="auto", help="GPU: CUDA binding"
    )
    p.add_argument(
        "--server",
        metavar="URL",
        help="time a Triton server from `drq serve` (http:// or grpc://) against the --onnx model in process",
    )
    p.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 4, 16], help="--server: concurrent clients"
    )
    p.add_argument("--requests", type=int, default=32, help="--server: requests per concurrency and side")
    p.add_argument(
        "--server-timeout", type=float, default=120.0, help="--server: seconds per request at most"
    )
    p.add_argument("-o", "--output", type=Path, help="write STEM.json, STEM.md and STEM.png")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    return p


def main(argv: list[str]) -> int:
    """Run `drq bench`; returns 0 (user errors raise BuildError: one line, exit 2)."""
    args = _parser().parse_args(argv)
    if args.output:
        for suffix in (".json", ".md") + (() if args.no_plot else (".png",)):
            check_writable(args.output.with_suffix(suffix))
    command = "drq bench " + " ".join(shlex.quote(a) for a in argv)
    if args.server:
        from engine_builder.server_bench import run_server_bench

        return run_server_bench(args, command)
    # GPU default: the two deployment sizes (x2 from 720p, x4 from 540p, both to 1440p/4K); an engine
    # whose profile does not cover one is skipped there with a note.
    default = ["256x256"] if args.onnx else ["1280x720", "960x540"]
    sizes = [parse_size(s) for s in (args.size or default)]
    if args.onnx:
        if len(sizes) != 1:
            raise BenchError("--size: the CPU benchmark takes one size")
        report = bench_onnx_cpu(
            parse_named(args.onnx, "--onnx"),
            sizes[0],
            args.threads,
            args.repeat,
            2 if args.warmup is None else args.warmup,
            args.data,
            args.baseline or "fp32",
            command=command,
            kernels=args.kernels,
            cuda=args.ort_cuda,
            disabled_optimizers=("NhwcTransformer",) if args.ort_no_nhwc else (),
        )
    else:
        if args.kernels or args.ort_cuda or args.ort_no_nhwc:
            raise BenchError(
                "--kernels / --ort-cuda / --ort-no-nhwc: onnxruntime options; use them with --onnx"
            )
        report = bench_engines(
            parse_named(args.engine, "--engine"),
            sizes,
            20 if args.warmup is None else args.warmup,
            args.iters,
            args.baseline or "fp16",
            args.cuda,
            command=command,
        )
    if args.output:
        for path in write_report(report, args.output, plot=not args.no_plot):
            print(f"wrote {path}")
    print(to_markdown(report), end="")
    return 0
