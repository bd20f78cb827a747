"""`drq bench --server URL`: a Triton server against the in-process runner on the same model, same run.

For each concurrency (default 1, 4, 16), a bounded closed loop (`serve.triton.load.closed_loop`) sends
the same encoded image `--requests` times to the server's image model (one tritonclient per thread),
then runs the same request in process: `serve.triton.pipeline.upscale_encoded` (decode, tile, run,
stitch, encode PNG) with one `OrtRunner` on the same ONNX file, the tiling read from the server's model
config. The two answers are checked to be byte-identical before timing; both sides first get 3 x the
highest concurrency untimed requests at that concurrency (every server instance warms up), and each
level runs in two alternating halves per side so drifting load from other jobs hits both alike.
Server overhead at concurrency c = server p50 / in-process p50 - 1 (target at concurrency 1: <= 15%).
"""

from __future__ import annotations

import argparse
import io
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from drq.artifacts import atomic_write_text
from engine_builder.bench import BenchError
from serve.triton.client import ImageClient
from serve.triton.load import LoadResult, closed_loop
from serve.triton.pipeline import TilePlan, upscale_encoded

OVERHEAD_TARGET = 0.15


@dataclass(frozen=True)
class ServerBenchRow:
    side: str  # "server" or "in-process"
    concurrency: int
    requests: int
    throughput: float  # images per second
    p50_ms: float
    p99_ms: float

    @classmethod
    def of(cls, side: str, result: LoadResult) -> ServerBenchRow:
        return cls(
            side,
            result.concurrency,
            len(result.latencies),
            result.throughput,
            result.percentile_ms(50),
            result.percentile_ms(99),
        )


def bench_image(width: int, height: int) -> bytes:
    """A deterministic PNG of the given LR size: smooth gradients plus noise (like a photo, compressible)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    rng = np.random.default_rng(0)
    base = np.stack([xx / width, yy / height, (xx + yy) / (width + height)], axis=2) * 200
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def _plan(params: dict[str, str], url: str) -> TilePlan:
    try:
        return TilePlan(*(int(params[k]) for k in ("scale", "tile", "overlap", "tile_batch")))
    except (KeyError, ValueError) as err:
        raise BenchError(f"{url}: the image model's config lacks drq's tiling parameters ({err})") from err


def bench_server(
    url: str,
    onnx: Path,
    size: tuple[int, int],
    levels: list[int],
    requests: int,
    threads: int,
    timeout_s: float,
) -> tuple[list[ServerBenchRow], TilePlan]:
    """Rows for the server and the in-process runner at each concurrency (interleaved per level).

    Raises:
        BenchError: the server's answer differs from the in-process one, or its config has no tiling.
        ClientError: a request failed.
    """
    from serve.runtime.ort import OrtRunner

    payload = bench_image(size[1], size[0])
    probe = ImageClient(url, timeout_s=timeout_s)
    plan = _plan(probe.model_parameters(), url)
    runner = OrtRunner(onnx, threads=threads or None)
    try:
        local_png = upscale_encoded(payload, plan, runner.run)
        if probe.upscale(payload) != local_png:
            raise BenchError(f"{url}: the server's PNG differs from the in-process runner's on {onnx}")
        probe.close()
        rows: list[ServerBenchRow] = []

        def server_call() -> object:
            client = ImageClient(url, timeout_s=timeout_s)
            return lambda: client.upscale(payload)

        def local_call() -> object:
            return lambda: upscale_encoded(payload, plan, runner.run)

        # Untimed rounds first at the highest concurrency: every server instance (and each instance's
        # onnxruntime session) has run the shape a few times, as the in-process session has.
        top = max(levels)
        closed_loop(server_call, top, 3 * top)
        closed_loop(local_call, top, 3 * top)
        for level in levels:
            count = max(requests, 2 * level)
            server, local = [], []
            # Two alternating halves per side, so drifting load from other jobs hits both sides alike.
            for _ in range(2):
                server.append(closed_loop(server_call, level, count // 2))
                local.append(closed_loop(local_call, level, count // 2))
            rows.append(ServerBenchRow.of("server", merge(server)))
            rows.append(ServerBenchRow.of("in-process", merge(local)))
    finally:
        runner.close()
    return rows, plan


def merge(results: list[LoadResult]) -> LoadResult:
    """One result from several runs at the same concurrency (latencies pooled, walls summed)."""
    return LoadResult(
        results[0].concurrency,
        tuple(t for r in results for t in r.latencies),
        sum(r.wall_s for r in results),
    )


def overheads(rows: list[ServerBenchRow]) -> dict[int, float]:
    """Server p50 / in-process p50 - 1, per concurrency."""
    by = {(r.side, r.concurrency): r for r in rows}
    return {
        c: by[("server", c)].p50_ms / by[("in-process", c)].p50_ms - 1.0
        for (side, c) in by
        if side == "server" and ("in-process", c) in by
    }


def to_markdown(command: str, rows: list[ServerBenchRow], plan: TilePlan, note: str) -> str:
    over = overheads(rows)
    lines = [
        "```",
        command,
        "```",
        "",
        note,
        "",
        f"Tiling (from the server's config): x{plan.scale}, tile {plan.tile}, overlap {plan.overlap}, "
        f"{plan.batch} tiles per call. Outputs checked byte-identical before timing.",
        "",
        "| side | concurrency | requests | images/s | p50 ms | p99 ms | server p50 overhead |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        extra = f"{over[r.concurrency] * 100:+.1f}%" if r.side == "server" else ""
        lines.append(
            f"| {r.side} | {r.concurrency} | {r.requests} | {r.throughput:.2f} | {r.p50_ms:.1f} | "
            f"{r.p99_ms:.1f} | {extra} |"
        )
    first = min(over) if over else None
    if first is not None:
        verdict = "met" if over[first] <= OVERHEAD_TARGET else "missed"
        lines += [
            "",
            f"Server overhead at concurrency {first}: {over[first] * 100:+.1f}% "
            f"(target <= {OVERHEAD_TARGET * 100:.0f}%: {verdict}).",
        ]
    return "\n".join(lines) + "\n"


def write_results(
    stem: Path, command: str, rows: list[ServerBenchRow], plan: TilePlan, note: str
) -> list[Path]:
    """STEM.json and STEM.md, atomically."""
    data = {
        "command": command,
        "machine": f"{platform.machine()} {platform.system()}, shared CPU",
        "plan": plan.__dict__,
        "rows": [r.__dict__ for r in rows],
        "overhead_p50": {str(c): v for c, v in overheads(rows).items()},
        "overhead_target": OVERHEAD_TARGET,
    }
    return [
        atomic_write_text(stem.with_suffix(".json"), json.dumps(data, indent=1) + "\n"),
        atomic_write_text(stem.with_suffix(".md"), to_markdown(command, rows, plan, note)),
    ]


def run_server_bench(args: argparse.Namespace, command: str) -> int:
    """`drq bench --server URL --onnx NAME=PATH [--size WxH] [--concurrency ...] [-o STEM]`."""
    from engine_builder.bench import parse_named, parse_size

    if not getattr(args, "onnx", None) or len(args.onnx) != 1:
        raise BenchError("--server: give the same model in process as --onnx NAME=PATH (one file)")
    ((name, onnx),) = parse_named(args.onnx, "--onnx").items()
    sizes = [parse_size(s) for s in (args.size or ["128x128"])]
    levels = args.concurrency
    if len(sizes) != 1 or any(c < 1 for c in levels) or args.requests < 1:
        raise BenchError("--server: one --size, concurrency levels >= 1 and --requests >= 1")
    rows, plan = bench_server(
        args.server,
        onnx,
        sizes[0],
        levels,
        args.requests,
        args.threads,
        args.server_timeout,
    )
    note = (
        f"Model {name} ({onnx.name}), LR {sizes[0][1]}x{sizes[0][0]}, in-process OrtRunner with "
        f"{args.threads} intra-op threads; server {args.server}. Measured side by side in one run on a "
        "CPU machine shared with other jobs: ratios are meaningful, absolute times are not."
    )
    if args.output:
        for path in write_results(args.output, command, rows, plan, note):
            print(f"wrote {path}")
    print(to_markdown(command, rows, plan, note), end="")
    return 0
