"""`drq plugin-bench`: memory traffic and picture quality of the dual-region plugin path.

For a `b-bit` recipe this command reports, per quantized conv input:

* bytes moved between the producer and the conv (COMPUTED from the recipe and the exported shapes at
  one input size, not measured): fp16 (2 bytes written + read per value), the plugin path if quantize
  and dequant were fused into the producer and the conv (int8 codes written + read, plus the 28-byte
  params vector), the plugin path as TensorRT runs it (TensorRT does not fuse plugins with its own
  layers, so each plugin is a kernel of its own: fp16 x written, read by DualRegionQuantize, int8 codes
  written and read by DualRegionDequant, fp16 x_hat written and read by the conv, params read twice),
  and drq-split (dense and outlier int8
  codes written + read, plus the float32 residual x - clip(x) written + read; also with the outlier
  branch restricted to the recipe's outlier channels);
* PSNR/SSIM-Y on a dataset (onnxruntime on the CPU) of the `drq-plugin` lowering beside `fp16`, and
  beside `qdq` and `drq-split` lowerings of the same calibrated bounds (uniform INT8 over [l, u], and
  split with s_o from the bounds), plus the torch simulation of the recipe;
* optionally (`--latency`) onnxruntime CPU latency of those graphs (MEASURED, median of `--repeats`).

Writes `<output>.json` and `<output>.md` (the command line is written in both).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from drq.artifacts import check_writable
from drq.cli_args import CommandParser, thread_count
from drq.grids import split_outlier_scale
from drq.recipe import DualRegionAct, LayerRecipe, Recipe, UniformAct, f32
from engine_builder.errors import BuildError, MissingDependency

PARAMS_BYTES = 7 * 4  # float32[7] per quantized tensor (plugins.spec)


@dataclass(frozen=True)
class TrafficRow:
    """Bytes between a conv input's producer and the conv, per image, for each path (computed)."""

    layer: str
    shape: tuple[int, int, int]  # C, H, W of the conv input
    outlier_channels: int | None
    fp16: int
    plugin: int  # quantize/dequant fused into producer and conv (an upper bound on the saving)
    plugin_standalone: int  # the two plugin kernels on their own, as in a TensorRT engine
    split: int
    split_outlier_channels_only: int


def _ort():
    try:
        import onnxruntime
    except ImportError as err:
        raise MissingDependency("drq plugin-bench needs onnxruntime (pip install onnxruntime)") from err
    return onnxruntime


def _session(model: onnx.ModelProto, threads: int):
    ort = _ort()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def conv_input_shapes(
    float_model: onnx.ModelProto, height: int, width: int
) -> dict[str, tuple[int, int, int]]:
    """(C, H, W) of every mapped layer's input (first call) for a 1 x 3 x height x width LR image."""
    from engine_builder.lowerings.graph import layer_map

    mapping = layer_map(float_model)
    nodes = {n.name: n for n in float_model.graph.node}
    probe = onnx.ModelProto()
    probe.CopyFrom(float_model)
    wanted = {layer: nodes[node].input[0] for layer, node in mapping.items()}
    for tensor in sorted(set(wanted.values()) - {o.name for o in probe.graph.output} - {"lr"}):
        probe.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    sess = _session(probe, 1)
    x = np.zeros((1, 3, height, width), dtype=np.float32)
    values = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, {"lr": x}), strict=True))
    values["lr"] = x
    return {layer: tuple(int(d) for d in values[t].shape[1:]) for layer, t in wanted.items()}  # type: ignore[misc]


def traffic(recipe: Recipe, shapes: dict[str, tuple[int, int, int]]) -> list[TrafficRow]:
    """Bytes per path for every recipe layer (see module docstring for the accounting)."""
    rows = []
    for name, layer in recipe.layers.items():
        c, h, w = shapes[name]
        n = c * h * w
        chans = layer.act.outlier_channels if isinstance(layer.act, DualRegionAct) else None
        k = len(chans) if chans is not None else c
        n_out = k * h * w
        rows.append(
            TrafficRow(
                layer=name,
                shape=(c, h, w),
                outlier_channels=None if chans is None else len(chans),
                fp16=2 * n * 2,
                plugin=2 * n + PARAMS_BYTES,
                plugin_standalone=(2 + 2) * n + (1 + 1) * n + (2 + 2) * n + 2 * PARAMS_BYTES,
                split=2 * n + 2 * n + 2 * 4 * n,
                split_outlier_channels_only=2 * n + 2 * n_out + 2 * 4 * n_out,
            )
        )
    return rows


def derived_recipes(recipe: Recipe) -> tuple[Recipe, Recipe]:
    """(uniform INT8 over each layer's [l, u], split with s_o from the bounds) of a dual-region recipe."""
    uniform, split = {}, {}
    for name, layer in recipe.layers.items():
        act = layer.act
        if not isinstance(act, DualRegionAct):
            raise BuildError(f"recipe layer {name!r}: plugin-bench needs a dual-region recipe")
        amax = max(act.upper, -act.lower)
        uniform[name] = LayerRecipe(
            op=layer.op, weight=layer.weight, act=UniformAct(bits=8, scale=f32(amax / 127.0))
        )
        s_o = split_outlier_scale(act.lower, act.breakpoint, act.upper, act.bits)
        split[name] = LayerRecipe(
            op=layer.op,
            weight=layer.weight,
            act=DualRegionAct(
                budget="split",
                bits=act.bits,
                lower=act.lower,
                breakpoint=act.breakpoint,
                upper=act.upper,
                outlier_scale=s_o,
                outlier_channels=act.outlier_channels,
            ),
        )
    return (
        replace(recipe, budget="uniform", a_bits=8, layers=uniform),
        replace(recipe, budget="split", layers=split),
    )


def ort_upscaler(model: onnx.ModelProto, threads: int):
    """`upscale(lr) -> sr` running `model` in onnxruntime (float32 or float16 I/O)."""
    sess = _session(model, threads)
    dtype = np.float16 if sess.get_inputs()[0].type == "tensor(float16)" else np.float32

    def upscale(lr: np.ndarray) -> np.ndarray:
        return sess.run(None, {"lr": lr.astype(dtype)})[0].astype(np.float32)

    return upscale


def cpu_latencies(
    graphs: dict[str, onnx.ModelProto], height: int, width: int, threads: int, repeats: int
) -> dict[str, float]:
    """Median wall seconds of one 1 x 3 x height x width run of each graph.

    Runs are interleaved (one run of every graph per round, after one warm-up round) so that load from
    other processes on a shared machine hits every graph alike.
    """
    sessions = {label: _session(graph, threads) for label, graph in graphs.items()}
    x = np.random.default_rng(0).random((1, 3, height, width))
    feeds = {
        label: {"lr": x.astype(np.float16 if s.get_inputs()[0].type == "tensor(float16)" else np.float32)}
        for label, s in sessions.items()
    }
    times: dict[str, list[float]] = {label: [] for label in sessions}
    for round_ in range(repeats + 1):
        for label, sess in sessions.items():
            start = time.perf_counter()
            sess.run(None, feeds[label])
            if round_:
                times[label].append(time.perf_counter() - start)
    return {label: float(np.median(t)) for label, t in times.items()}


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="drq plugin-bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", type=Path, required=True, help="a b-bit recipe")
    p.add_argument("--weights", type=Path, help="checkpoint (default: the recipe's)")
    p.add_argument("--data", type=Path, required=True, help="dataset folder (HR/ + LR/) for PSNR")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="output stem: writes <stem>.json and <stem>.md"
    )
    p.add_argument("--size", default="256x256", help="LR input HxW for the traffic table and latency")
    p.add_argument("--threads", type=thread_count, default=2, help="onnxruntime CPU threads")
    p.add_argument("--latency", action="store_true", help="also measure onnxruntime CPU latency")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--calib", type=Path, help="HR image folder for the ort-cpu graphs' conv output ranges")
    return p


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise BuildError(f"--size: expected HxW like 256x256, got {text!r}") from None
    if h < 1 or w < 1:
        raise BuildError(f"--size: expected positive sizes, got {text!r}")
    return h, w


def main(argv: list[str]) -> int:
    """Run `drq plugin-bench`; writes the JSON and Markdown reports."""
    args = _parser().parse_args(argv)
    height, width = _size(args.size)
    if args.threads < 1 or args.repeats < 1:
        raise BuildError(f"--threads and --repeats: must be >= 1, got {args.threads} and {args.repeats}")
    stem = args.output.with_suffix("") if args.output.suffix in (".json", ".md") else args.output
    for suffix in (".json", ".md"):
        check_writable(stem.with_suffix(suffix))
    from drq.imaging.datasets import open_dataset
    from drq.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    if recipe.budget != "b-bit":
        raise BuildError(f"{args.recipe}: plugin-bench needs a b-bit recipe, this one is {recipe.budget!r}")
    dataset = open_dataset(args.data, recipe.model.scale)
    sim, float_model, graphs = _lowered_graphs(recipe, args)
    quality = _quality(sim, graphs, dataset, recipe.model.scale, args.threads)
    latency, load_note = ({}, "")
    if args.latency:
        cpu_graphs = dict(graphs)
        if args.calib:
            cpu_graphs.update(_ort_cpu_graphs(recipe, float_model, args.calib))
            quality.update(_quality(None, cpu_graphs, dataset, recipe.model.scale, args.threads, skip=graphs))
        latency, load_note = _measured_latency(cpu_graphs, height, width, args)
    rows = traffic(recipe, conv_input_shapes(float_model, height, width))
    report = _report(argv, args, recipe, (height, width), rows, quality, latency, load_note)
    from drq.artifacts import atomic_write_text

    atomic_write_text(stem.with_suffix(".json"), json.dumps(report, indent=1) + "\n")
    atomic_write_text(stem.with_suffix(".md"), _markdown(report))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}", file=sys.stdout)
    return 0


def _lowered_graphs(
    recipe: Recipe, args: argparse.Namespace
) -> tuple[Any, onnx.ModelProto, dict[str, onnx.ModelProto]]:
    """The simulated torch model, its float ONNX graph, and the five lowerings compared."""
    from calib.simulate import load_simulated_model
    from engine_builder.export.torch_export import export_float_onnx
    from engine_builder.lowerings.registry import lower

    sim = load_simulated_model(recipe, args.weights, args.recipe)
    float_model = export_float_onnx(sim, scale=recipe.model.scale)
    uniform, split = derived_recipes(recipe)
    graphs = {
        "fp32": lower("fp32", float_model, None),
        "fp16": lower("fp16", float_model, None),
        "qdq (uniform INT8 over [l, u])": lower("qdq", float_model, uniform),
        "drq-split (same bounds)": lower("drq-split", float_model, split),
        "drq-plugin": lower("drq-plugin", float_model, recipe),
    }
    return sim, float_model, graphs


def _ort_cpu_graphs(recipe: Recipe, float_model: onnx.ModelProto, calib: Path) -> dict[str, onnx.ModelProto]:
    """The integer graphs onnxruntime's CPU kernels run (conv output ranges from `calib`'s LR crops)."""
    from drq.imaging.datasets import calib_crops
    from engine_builder.lowerings.common import LoweringOptions
    from engine_builder.lowerings.ort_cpu import lower_for_ort_cpu

    uniform, split = derived_recipes(recipe)
    crops = [c[None] for c in calib_crops(calib, recipe.model.scale, 64, 8, seed=0)]
    opts = LoweringOptions()
    return {
        "qdq --target ort-cpu": lower_for_ort_cpu("qdq", float_model, uniform, opts, crops),
        "drq-split --target ort-cpu": lower_for_ort_cpu("drq-split", float_model, split, opts, crops),
        "drq-split --target ort-cpu --outlier-channels-only": lower_for_ort_cpu(
            "drq-split", float_model, split, replace(opts, outlier_channels_only=True), crops
        ),
    }


def _quality(
    sim: Any, graphs: dict[str, onnx.ModelProto], dataset: Any, scale: int, threads: int, skip: Any = ()
) -> dict[str, Any]:
    """PSNR/SSIM-Y of the torch simulation (when given) and of each graph not in `skip`."""
    from calib.inference import torch_upscaler
    from drq.imaging.evaluate import evaluate_dataset

    quality = {}
    if sim is not None:
        quality["torch simulation (b-bit)"] = evaluate_dataset(torch_upscaler(sim), dataset, scale)
    for label, graph in graphs.items():
        if label not in skip:
            quality[label] = evaluate_dataset(ort_upscaler(graph, threads), dataset, scale)
    return quality


def _measured_latency(
    graphs: dict[str, onnx.ModelProto], height: int, width: int, args: argparse.Namespace
) -> tuple[dict[str, float], str]:
    """Interleaved CPU latencies, and a note of the machine's load before and after."""
    load_before = os.getloadavg()[0]
    latency = cpu_latencies(graphs, height, width, args.threads, args.repeats)
    load_after = os.getloadavg()[0]
    note = f"; 1-min load average {load_before:.1f} before, {load_after:.1f} after ({os.cpu_count()} CPUs)"
    return latency, note


def _report(
    argv: list[str],
    args: argparse.Namespace,
    recipe: Recipe,
    size: tuple[int, int],
    rows: list[TrafficRow],
    quality: dict[str, Any],
    latency: dict[str, float],
    load_note: str,
) -> dict[str, Any]:
    """The JSON report (the Markdown is rendered from it)."""
    height, width = size
    return {
        "command": "drq plugin-bench " + " ".join(shlex.quote(a) for a in argv),
        "recipe": str(args.recipe),
        "recipe_sha256": recipe.sha256(),
        "arch": recipe.model.arch,
        "scale": recipe.model.scale,
        "input_size": [height, width],
        "traffic_note": "computed from the recipe and exported shapes, not measured",
        "traffic": [asdict(r) for r in rows],
        "traffic_total": {
            k: sum(getattr(r, k) for r in rows)
            for k in ("fp16", "plugin", "plugin_standalone", "split", "split_outlier_channels_only")
        },
        "quality": {
            k: {"dataset": v.name, "images": v.images, "psnr_y": v.psnr, "ssim_y": v.ssim}
            for k, v in quality.items()
        },
        "latency_note": f"onnxruntime {_ort().__version__} CPUExecutionProvider, {args.threads} threads, "
        f"median of {args.repeats} interleaved rounds, 1x3x{height}x{width}; measured{load_note}",
        "latency_s": latency,
    }


def _markdown(r: dict) -> str:
    mb = 1e6
    t = r["traffic_total"]
    lines = [
        f"# Dual-region plugin path: {r['arch']} x{r['scale']}",
        "",
        "Produced by:",
        "",
        f"    {r['command']}",
        "",
        f"Recipe sha256 `{r['recipe_sha256']}`.",
        "",
        f"## Memory traffic per image ({r['input_size'][0]}x{r['input_size'][1]} LR), {r['traffic_note']}",
        "",
        'Bytes between each quantized conv input\'s producer and the conv (write + read). "plugin, fused" '
        "assumes quantize and dequant inside the producer and the conv; TensorRT does not fuse plugins with "
        'its own layers, so an engine runs "plugin, standalone" (fp16 x, int8 codes, fp16 x_hat).',
        "",
        "| layer | C x H x W | outlier ch. | fp16 | plugin, fused (int8 codes) | plugin, standalone "
        "| drq-split | split, outlier ch. only |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in r["traffic"]:
        c, h, w = row["shape"]
        lines.append(
            f"| {row['layer']} | {c}x{h}x{w} | {row['outlier_channels']} | {row['fp16'] / mb:.2f} MB | "
            f"{row['plugin'] / mb:.2f} MB | {row['plugin_standalone'] / mb:.2f} MB | "
            f"{row['split'] / mb:.2f} MB | "
            f"{row['split_outlier_channels_only'] / mb:.2f} MB |"
        )
    lines += [
        f"| **total** | | | {t['fp16'] / mb:.1f} MB | {t['plugin'] / mb:.1f} MB "
        f"({t['plugin'] / t['fp16']:.2f}x fp16) | {t['plugin_standalone'] / mb:.1f} MB "
        f"({t['plugin_standalone'] / t['fp16']:.2f}x) | "
        f"{t['split'] / mb:.1f} MB ({t['split'] / t['fp16']:.2f}x) | "
        f"{t['split_outlier_channels_only'] / mb:.1f} MB "
        f"({t['split_outlier_channels_only'] / t['fp16']:.2f}x) |",
        "",
        "## Quality (onnxruntime CPU unless noted)",
        "",
        "| graph | dataset | PSNR-Y | SSIM-Y |",
        "|---|---|---|---|",
    ]
    for label, q in r["quality"].items():
        lines.append(f"| {label} | {q['dataset']} ({q['images']}) | {q['psnr_y']:.3f} | {q['ssim_y']:.4f} |")
    if r["latency_s"]:
        base = r["latency_s"].get("fp32")
        lines += [
            "",
            f"## CPU latency ({r['latency_note']})",
            "",
            "| graph | ms | vs fp32 |",
            "|---|---|---|",
        ]
        for label, s in r["latency_s"].items():
            lines.append(
                f"| {label} | {s * 1e3:.1f} | {s / base:.2f} |" if base else f"| {label} | {s * 1e3:.1f} | |"
            )
    return "\n".join(lines) + "\n"
