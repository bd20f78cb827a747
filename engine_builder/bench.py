"""Latency, throughput and quality of lowerings side by side (`drq bench`), torch-free.

Two kinds of run, one report format:

* CPU (the embedded default): onnxruntime runs each ONNX file on the same LR size with a fixed
  intra-op thread count. Models are timed round-robin (one run of each per round, `repeat` rounds
  after `warmup` runs each), so drift of a shared machine hits every model alike; the reported latency
  is the median of the rounds. With `data`, PSNR-Y / SSIM-Y of every model on that dataset sit in the
  same table (`drq.imaging.evaluate.evaluate_dataset`). With `kernels`, each model is also profiled
  (`runtime.ort.profile_kernels`): the op types of onnxruntime's optimized graph that ran and their
  kernel time, grouped into integer convs, float convs, Q/DQ, layout and other ops, so a quantized graph
  that is not faster shows which kernels its time went to.
* GPU: TensorRT engines (`runtime.trt.TrtRunner`) timed with CUDA events around `execute_async_v3`
  only (copies excluded) after warm-up; p50/p90/p99 over `iters` launches; device memory of the
  engine's context plus I/O buffers.

Every row has a speedup against the baseline model of the same run (fp32 on the CPU, the FP16 engine on
the GPU): baseline p50 / row p50. Throughput is images/s = batch * 1000 / p50 and output (SR)
megapixels/s. Reports are written atomically as JSON, Markdown (headed by the command) and a PNG.
"""

from __future__ import annotations

import io
import json
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from drq.artifacts import atomic_write_bytes, atomic_write_text
from engine_builder.errors import BuildError, MissingDependency
from serve.runtime.ort import KernelTime

SCHEMA_VERSION = 1
KERNEL_RUNS = 3  # profiled runs per model for `kernels`


class BenchError(BuildError):
    """Bad benchmark arguments (sizes, names, missing baseline)."""


def parse_size(text: str) -> tuple[int, int]:
    """ "1280x720" (width x height, as video sizes are written) -> (height, width) = (720, 1280).

    Raises:
        BenchError: not two positive integers joined by "x".
    """
    parts = str(text).lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError as err:
        raise BenchError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720") from err
    if width < 1 or height < 1:
        raise BenchError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720")
    from drq.imaging.io import pixel_limit

    if width * height > pixel_limit():  # the same bound as every image drq reads (memory)
        raise BenchError(
            f"--size {text!r}: {width * height} pixels, over the pixel limit of {pixel_limit()} "
            "(DRQ_MAX_PIXELS)"
        )
    return height, width


def parse_named(items: Sequence[str], what: str) -> dict[str, Path]:
    """["fp32=a.onnx", "qdq=b.onnx"] -> {"fp32": Path("a.onnx"), ...} (order kept).

    Raises:
        BenchError: an item without NAME=, a duplicate name, or a missing file.
    """
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise BenchError(f"{what} {item!r}: expected NAME=PATH, e.g. qdq=model_qdq.onnx")
        if name in out:
            raise BenchError(f"{what} {item!r}: name {name!r} given twice")
        if not Path(path).is_file():
            raise BenchError(f"{path}: no such file ({what} {name})")
        out[name] = Path(path)
    if not out:
        raise BenchError(f"{what}: give at least one NAME=PATH")
    return out


@dataclass(frozen=True)
class LatencyStats:
    """Latency percentiles in milliseconds over `runs` timed runs (linear interpolation)."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    runs: int

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> LatencyStats:
        data = np.asarray(samples_ms, dtype=np.float64)
        if data.size == 0 or not np.all(np.isfinite(data)) or np.any(data < 0):
            raise BenchError(f"latency samples: need finite non-negative values, got {list(samples_ms)[:5]}")
        p50, p90, p99 = np.percentile(data, [50, 90, 99])
        return cls(float(p50), float(p90), float(p99), float(data.mean()), int(data.size))


@dataclass(frozen=True)
class BenchRow:
    """One model at one input size."""

    name: str
    backend: str  # "onnxruntime-cpu" | "tensorrt" | "tensorrt_rtx"
    lr_hw: tuple[int, int]
    scale: int
    batch: int
    latency: LatencyStats
    speedup: float | None = None  # baseline p50 / this p50 (same size, same run)
    psnr: float | None = None
    ssim: float | None = None
    memory_mib: float | None = None

    @property
    def images_per_s(self) -> float:
        return self.batch * 1000.0 / self.latency.p50_ms

    @property
    def megapixels_per_s(self) -> float:
        """Output (SR) megapixels per second."""
        h, w = self.lr_hw
        return self.batch * h * w * self.scale * self.scale / 1e6 * 1000.0 / self.latency.p50_ms

    @property
    def latency_ratio(self) -> float | None:
        """This p50 / the baseline's p50 (the issue's "ratio": below 1.0 is faster than the baseline)."""
        return None if not self.speedup else 1.0 / self.speedup

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["latency_ratio"] = self.latency_ratio
        out["images_per_s"] = self.images_per_s
        out["megapixels_per_s"] = self.megapixels_per_s
        return out


# onnxruntime op types by what they cost a quantized SR net: integer kernels are the goal, float convs
# mean a Q/DQ pattern was not fused, Q/DQ and layout ops are the price of the integer ones.
KERNEL_GROUPS: tuple[tuple[str, frozenset[str]], ...] = (
    ("integer conv", frozenset({"QLinearConv", "ConvInteger", "QLinearMatMul", "MatMulInteger"})),
    ("float conv", frozenset({"Conv", "FusedConv", "ConvTranspose", "NhwcFusedConv"})),
    ("Q/DQ", frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})),
    ("layout", frozenset({"Transpose", "ReorderInput", "ReorderOutput"})),
)
OTHER_GROUP = "other"


def kernel_group(op: str) -> str:
    """The `KERNEL_GROUPS` name of an op label such as "com.microsoft:QLinearConv" (else "other")."""
    op_type = op.rsplit(":", 1)[-1]
    return next((name for name, types in KERNEL_GROUPS if op_type in types), OTHER_GROUP)


def group_kernels(kernels: Sequence[KernelTime]) -> dict[str, tuple[int, float]]:
    """{group: (nodes, ms)} for every group of `KERNEL_GROUPS` plus "other", in that order."""
    out = {name: (0, 0.0) for name, _ in KERNEL_GROUPS} | {OTHER_GROUP: (0, 0.0)}
    for k in kernels:
        nodes, ms = out[kernel_group(k.op)]
        out[kernel_group(k.op)] = (nodes + k.nodes, ms + k.ms)
    return out


@dataclass(frozen=True)
class BenchReport:
    """A benchmark run: the command, its settings, where it ran and the rows."""

    command: str
    kind: str  # "cpu" | "gpu"
    baseline: str
    settings: Mapping[str, Any]
    environment: Mapping[str, Any]
    rows: tuple[BenchRow, ...]
    quality_dataset: str = ""
    schema_version: int = SCHEMA_VERSION
    notes: tuple[str, ...] = field(default=())
    kernels: tuple[tuple[str, tuple[KernelTime, ...]], ...] = field(default=())  # (model, kernels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": self.schema_version,
            "command": self.command,
            "kind": self.kind,
            "baseline": self.baseline,
            "settings": dict(self.settings),
            "environment": dict(self.environment),
            "quality_dataset": self.quality_dataset,
            "notes": list(self.notes),
            "rows": [r.to_dict() for r in self.rows],
            "kernels": {name: [asdict(k) for k in ks] for name, ks in self.kernels},
        }


def with_speedups(rows: Sequence[BenchRow], baseline: str) -> tuple[BenchRow, ...]:
    """Rows with `speedup` = p50 of the baseline at the same LR size / own p50.

    Raises:
        BenchError: the baseline is not among the rows (the message lists the names).
    """
    names = list(dict.fromkeys(r.name for r in rows))
    if baseline not in names:
        raise BenchError(f"--baseline {baseline!r}: not among the benchmarked models ({', '.join(names)})")
    base = {r.lr_hw: r.latency.p50_ms for r in rows if r.name == baseline}
    out = []
    for row in rows:
        ref = base.get(row.lr_hw)
        speed = None if ref is None else ref / row.latency.p50_ms
        out.append(
            BenchRow(
                row.name,
                row.backend,
                row.lr_hw,
                row.scale,
                row.batch,
                row.latency,
                speed,
                row.psnr,
                row.ssim,
                row.memory_mib,
            )
        )
    return tuple(out)


def _scale_of(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    value = next((p.value for p in model.metadata_props if p.key == "drq.scale"), None)
    return int(value) if value else None


def time_round_robin(
    runs: Mapping[str, Callable[[], object]],
    repeat: int,
    warmup: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Warm each callable up, then time one call of each per round for `repeat` rounds (ms)."""
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, fn in runs.items():
            start = clock()
            fn()
            samples[name].append((clock() - start) * 1000.0)
    return samples


def _check_cpu_args(
    models: Mapping[str, Path],
    threads: int,
    repeat: int,
    warmup: int,
    baseline: str,
    kernels: bool,
    cuda: bool,
) -> None:
    if kernels and cuda:
        raise BenchError("--kernels: profiles onnxruntime's CPU provider; drop --ort-cuda")
    if repeat < 1 or warmup < 0 or threads < 1:
        raise BenchError(f"need repeat >= 1, warmup >= 0, threads >= 1; got {repeat}, {warmup}, {threads}")
    if baseline not in models:
        raise BenchError(f"--baseline {baseline!r}: not among the models ({', '.join(models)})")


def _output_scales(runners: Mapping[str, Any], models: Mapping[str, Path], x: np.ndarray) -> dict[str, int]:
    """Each model's upscaling factor, from one run on `x`, checked against its drq.scale and the others'.

    Raises:
        BenchError: a model is not an integer upscale, disagrees with its metadata, or with the others.
    """
    lr_hw = x.shape[2:]
    scales = {}
    for name, runner in runners.items():
        out = runner.run(x)
        if out.shape[2] % lr_hw[0] or out.shape[2] // lr_hw[0] != out.shape[3] // lr_hw[1]:
            raise BenchError(
                f"{models[name]}: output {list(out.shape)} is not an integer upscale of {list(x.shape)}"
            )
        scales[name] = out.shape[2] // lr_hw[0]
        declared = _scale_of(models[name])
        if declared is not None and declared != scales[name]:
            raise BenchError(f"{models[name]}: drq.scale says x{declared}, output is x{scales[name]}")
    if len(set(scales.values())) != 1:
        raise BenchError(f"models upscale differently ({scales}); compare one model's lowerings")
    return scales


def _score(runners: Mapping[str, Any], data: Path, scale: int) -> tuple[dict[str, tuple[float, float]], str]:
    """PSNR-Y / SSIM-Y of every runner on the dataset at `data`, and the dataset's label."""
    from drq.imaging.datasets import open_dataset
    from drq.imaging.evaluate import evaluate_dataset

    dataset = open_dataset(data, scale)
    quality = {}
    for name, runner in runners.items():
        result = evaluate_dataset(runner.run, dataset, scale)
        quality[name] = (result.psnr, result.ssim)
    return quality, f"{dataset.name} x{scale}"


def _cpu_notes(
    repeat: int, warmup: int, threads: int, cuda: bool, kernels: bool, disabled_optimizers: tuple[str, ...]
) -> list[str]:
    notes = [
        f"latency: median of {repeat} round-robin runs after {warmup} warm-up runs each; "
        + (
            "onnxruntime CUDAExecutionProvider, each run including its host<->device copies; "
            if cuda
            else f"onnxruntime CPUExecutionProvider, {threads} intra-op threads; "
        )
        + "p90/p99 of so few rounds are "
        "interpolated, not tail latencies"
    ]
    if disabled_optimizers:
        notes.append(
            f"onnxruntime graph transformers disabled in every session: {', '.join(disabled_optimizers)}"
        )
    if kernels:
        notes.append(
            f"kernels: onnxruntime's profiler (enable_profiling) over {KERNEL_RUNS} runs per model after "
            "1 warm-up, joined with the session's optimized graph (optimized_model_filepath); ms are "
            "per run and sum the per-node kernel times (executor overhead excluded)"
        )
    return notes


def _cpu_environment(providers: Sequence[str]) -> dict[str, Any]:
    from serve.runtime.ort import import_onnxruntime

    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": import_onnxruntime().__version__,
        "providers": ",".join(providers),
        "numpy": np.__version__,
    }


def bench_onnx_cpu(
    models: Mapping[str, Path],
    lr_hw: tuple[int, int],
    threads: int,
    repeat: int = 5,
    warmup: int = 2,
    data: Path | None = None,
    baseline: str = "fp32",
    seed: int = 0,
    command: str = "",
    kernels: bool = False,
    cuda: bool = False,
    disabled_optimizers: tuple[str, ...] = (),
) -> BenchReport:
    """Time ONNX models with onnxruntime on the CPU (and score them on `data` if given).

    Steps: check the arguments, open one runner per model, check they upscale alike, time them
    round-robin, score them, profile their kernels, then assemble the report.

    Args:
        models: {name: ONNX path}, e.g. fp32 / qdq / drq-split exports of one model.
        lr_hw: LR input (height, width); batch 1.
        threads: onnxruntime intra-op threads.
        repeat: timed rounds (the median is reported); warmup: untimed runs per model first.
        data: an SR dataset folder (HR/ and LR/, e.g. Set5/x4) for PSNR-Y / SSIM-Y.
        baseline: the model the speedups are relative to.
        kernels: also profile which onnxruntime kernels each model runs (`KERNEL_RUNS` runs after
            the timing, same input and threads; CPU provider only).
        cuda: run on onnxruntime's CUDA execution provider instead (the GPU path that needs no
            TensorRT); each timed `session.run` then includes its host<->device copies.
        disabled_optimizers: onnxruntime graph transformers every session skips (timing and kernels),
            e.g. ("NhwcTransformer",): QLinearConv then stays channels-first, and so do the ops around it.

    Raises:
        BenchError: bad arguments; BuildError: a model onnxruntime cannot load.
    """
    from serve.runtime.ort import OrtRunner, profile_kernels

    _check_cpu_args(models, threads, repeat, warmup, baseline, kernels, cuda)
    runners = {
        name: OrtRunner(path, threads=threads, cuda=cuda, disabled_optimizers=disabled_optimizers)
        for name, path in models.items()
    }
    x = np.random.default_rng(seed).random((1, 3, *lr_hw), dtype=np.float32)
    scales = _output_scales(runners, models, x)
    samples = time_round_robin({n: (lambda r=r: r.run(x)) for n, r in runners.items()}, repeat, warmup)
    quality, dataset_name = _score(runners, data, next(iter(scales.values()))) if data else ({}, "")
    backend = "onnxruntime-cuda" if cuda else "onnxruntime-cpu"
    rows = [
        BenchRow(
            name,
            backend,
            lr_hw,
            scales[name],
            1,
            LatencyStats.of(samples[name]),
            psnr=quality.get(name, (None, None))[0],
            ssim=quality.get(name, (None, None))[1],
        )
        for name in models
    ]
    providers = next(iter(runners.values())).providers
    for runner in runners.values():
        runner.close()
    profiles = (
        tuple(
            (name, profile_kernels(path, x, threads, KERNEL_RUNS, disabled_optimizers=disabled_optimizers))
            for name, path in models.items()
        )
        if kernels
        else ()
    )
    settings = {
        "lr_hw": list(lr_hw),
        "threads": threads,
        "repeat": repeat,
        "warmup": warmup,
        "batch": 1,
        "models": {n: str(p) for n, p in models.items()},
        "data": str(data) if data else "",
        "disabled_optimizers": list(disabled_optimizers),
    }
    return BenchReport(
        command,
        "ort-cuda" if cuda else "cpu",
        baseline,
        settings,
        _cpu_environment(providers),
        with_speedups(rows, baseline),
        dataset_name,
        notes=tuple(_cpu_notes(repeat, warmup, threads, cuda, kernels, disabled_optimizers)),
        kernels=profiles,
    )


def _time_engine(runner: Any, warmup: int, iters: int) -> list[float]:
    """Milliseconds of `iters` launches of the runner's context (CUDA events), after `warmup` launches."""
    api, stream = runner.cuda, runner.stream
    handle = api.stream_handle(stream)
    start, end = api.event_create(), api.event_create()
    for _ in range(warmup):
        runner.context.execute_async_v3(handle)
    api.stream_synchronize(stream)
    times = []
    for _ in range(iters):
        api.event_record(start, stream)
        runner.context.execute_async_v3(handle)
        api.event_record(end, stream)
        api.event_synchronize(end)
        times.append(api.event_elapsed_ms(start, end))
    return times


def _engine_rows(
    runners: Mapping[str, Any], sizes: Sequence[tuple[int, int]], warmup: int, iters: int, notes: list[str]
) -> list[BenchRow]:
    """One row per engine and size it covers (a size outside an engine's profile is noted and skipped)."""
    from serve.errors import EngineMismatch

    rows: list[BenchRow] = []
    for lr_hw in sizes:
        x = np.random.default_rng(0).random((1, 3, *lr_hw), dtype=np.float32)
        for name, runner in runners.items():
            try:
                out = runner.run(x)  # sets shapes and addresses, copies x in once
            except EngineMismatch as err:
                notes.append(f"{name} skipped at {lr_hw[1]}x{lr_hw[0]}: {err}")
                continue
            times = _time_engine(runner, warmup, iters)
            rows.append(
                BenchRow(
                    name,
                    runner.manifest.flavour,
                    lr_hw,
                    out.shape[2] // lr_hw[0],
                    1,
                    LatencyStats.of(times),
                    memory_mib=runner.device_memory_bytes() / 2**20,
                )
            )
    return rows


def _engine_environment(first: Any) -> dict[str, Any]:
    device, capability = first.cuda.device()
    return {
        "device": device,
        "compute_capability": capability,
        "tensorrt": first.backend.version,
        "flavour": first.manifest.flavour,
        "cuda_binding": first.cuda.name,
    }


def bench_engines(
    engines: Mapping[str, Path],
    sizes: Sequence[tuple[int, int]],
    warmup: int = 20,
    iters: int = 200,
    baseline: str = "fp16",
    cuda: str = "auto",
    command: str = "",
) -> BenchReport:
    """Time TensorRT engines on the GPU with CUDA events, every engine at every LR size, side by side.

    Steps: open the engines one at a time (a failed load closes the earlier ones), time each at each
    size (`_engine_rows`), read the environment off the first, close them all, assemble the report.
    An engine whose profile does not cover a size is skipped at that size (noted in the report).

    Raises:
        BenchError: bad arguments; EngineMismatch / MissingDependency from loading the engines.
    """
    from serve.runtime.trt import TrtRunner

    if iters < 1 or warmup < 0:
        raise BenchError(f"need iters >= 1 and warmup >= 0; got {iters}, {warmup}")
    if baseline not in engines:
        raise BenchError(f"--baseline {baseline!r}: not among the engines ({', '.join(engines)})")
    runners: dict[str, TrtRunner] = {}
    notes: list[str] = []
    try:
        for name, path in engines.items():
            runners[name] = TrtRunner(path, cuda=cuda)  # type: ignore[arg-type]
        rows = _engine_rows(runners, sizes, warmup, iters, notes)
        environment = _engine_environment(next(iter(runners.values())))
    finally:
        for runner in runners.values():
            runner.close()
    if not rows:
        raise BenchError("no engine covered any --size; check the engines' profiles (drq build --min/--max)")
    settings = {
        "sizes_wxh": [f"{w}x{h}" for h, w in sizes],
        "warmup": warmup,
        "iters": iters,
        "batch": 1,
        "engines": {n: str(p) for n, p in engines.items()},
    }
    notes.insert(
        0,
        f"latency: CUDA events around execute_async_v3 only (copies excluded), {iters} launches "
        f"after {warmup} warm-up launches; memory: context device memory + I/O buffers",
    )
    return BenchReport(
        command, "gpu", baseline, settings, environment, with_speedups(rows, baseline), notes=tuple(notes)
    )


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def to_markdown(report: BenchReport) -> str:
    """The report as Markdown: the command, where it ran, one table, the notes."""
    lines = [f"# drq bench ({report.kind})", "", "```", report.command or "drq bench", "```", ""]
    env = ", ".join(f"{k}: {v}" for k, v in report.environment.items())
    lines += [f"Environment: {env}", ""]
    quality = f"PSNR-Y {report.quality_dataset}" if report.quality_dataset else "PSNR-Y"
    header = [
        "model",
        "backend",
        "LR (WxH)",
        "scale",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "images/s",
        "SR MP/s",
        f"speedup vs {report.baseline}",
        f"p50 / {report.baseline} p50",
        quality,
        "SSIM-Y",
    ]
    if report.kind == "gpu":
        header.append("memory MiB")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in report.rows:
        cells = [
            r.name,
            r.backend,
            f"{r.lr_hw[1]}x{r.lr_hw[0]}",
            f"x{r.scale}",
            _fmt(r.latency.p50_ms, 2),
            _fmt(r.latency.p90_ms, 2),
            _fmt(r.latency.p99_ms, 2),
            _fmt(r.images_per_s, 2),
            _fmt(r.megapixels_per_s, 2),
            _fmt(r.speedup, 2) + ("x" if r.speedup else ""),
            _fmt(r.latency_ratio, 2),
            _fmt(r.psnr, 2),
            _fmt(r.ssim, 4),
        ]
        if report.kind == "gpu":
            cells.append(_fmt(r.memory_mib, 1))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [""] + [f"- {note}" for note in report.notes]
    if report.kernels:
        lines += [""] + kernels_markdown(report.kernels)
    return "\n".join(lines) + "\n"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.0f}%" if whole > 0 else "-"


def kernels_markdown(
    kernels: Sequence[tuple[str, Sequence[KernelTime]]], min_share: float = 0.02
) -> list[str]:
    """Markdown lines: per model, nodes and share of kernel time per group, then the op types that ran.

    Op types under `min_share` of a model's kernel time are summed into one "(rest)" line.
    """
    groups = [name for name, _ in KERNEL_GROUPS] + [OTHER_GROUP]
    lines = [
        "## onnxruntime kernels that ran (`--kernels`)",
        "",
        "Nodes per run and share of the model's kernel time, by kind of op:",
        "",
        "| model | kernel ms | " + " | ".join(groups) + " |",
        "|" + "---|" * (len(groups) + 2),
    ]
    for name, ks in kernels:
        total = sum(k.ms for k in ks)
        grouped = group_kernels(ks)
        cells = [f"{grouped[g][0]} ({_pct(grouped[g][1], total)})" for g in groups]
        lines.append(f"| {name} | {total:.1f} | " + " | ".join(cells) + " |")
    lines += ["", "Op types of each optimized graph, longest first:", ""]
    lines += ["| model | op (domain:type) | kind | nodes | ms | share |", "|---|---|---|---|---|---|"]
    for name, ks in kernels:
        total = sum(k.ms for k in ks)
        rest = [k for k in ks if total <= 0 or k.ms / total < min_share]
        for k in ks:
            if k not in rest:
                share = _pct(k.ms, total)
                lines.append(f"| {name} | {k.op} | {kernel_group(k.op)} | {k.nodes} | {k.ms:.1f} | {share} |")
        if rest:
            ms = sum(k.ms for k in rest)
            nodes = sum(k.nodes for k in rest)
            lines.append(
                f"| {name} | (rest: {len(rest)} op types) | - | {nodes} | {ms:.1f} | {_pct(ms, total)} |"
            )
    return lines


def plot_png(report: BenchReport) -> bytes:
    """PNG: latency vs PSNR-Y per model when quality was measured, else p50 latency bars per size.

    Raises:
        MissingDependency: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise MissingDependency("the benchmark plot needs matplotlib (pip install 'drq[report]')") from err
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    if any(r.psnr is not None for r in report.rows):
        for r in report.rows:
            if r.psnr is None:
                continue
            ax.scatter(r.latency.p50_ms, r.psnr, s=40)
            ax.annotate(
                r.name, (r.latency.p50_ms, r.psnr), textcoords="offset points", xytext=(5, 4), fontsize=9
            )
        ax.set_xlabel("p50 latency (ms)")
        ax.set_ylabel(f"PSNR-Y (dB) {report.quality_dataset}")
    else:
        labels = [f"{r.name}\n{r.lr_hw[1]}x{r.lr_hw[0]}" for r in report.rows]
        ax.bar(range(len(report.rows)), [r.latency.p50_ms for r in report.rows])
        ax.set_xticks(range(len(report.rows)), labels, fontsize=8)
        ax.set_ylabel("p50 latency (ms)")
    ax.set_title(f"drq bench ({report.kind})", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def write_report(report: BenchReport, stem: Path, plot: bool = True) -> list[Path]:
    """Write `<stem>.json`, `<stem>.md` and (if `plot`) `<stem>.png` atomically; returns the paths."""
    stem = Path(stem)
    paths = [
        atomic_write_text(
            stem.with_suffix(".json"), json.dumps(report.to_dict(), indent=1, allow_nan=False) + "\n"
        ),
        atomic_write_text(stem.with_suffix(".md"), to_markdown(report)),
    ]
    if plot:
        paths.append(atomic_write_bytes(stem.with_suffix(".png"), plot_png(report)))
    return paths
