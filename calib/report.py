"""`drq report`: the PTQ results grid (models x methods x bits x budgets x datasets) as Markdown, JSON, PNG.

Every configuration is quantized with `calib.calibrate.quantize` from the same seeded calibration crops
and scored with the papers' protocol (`drq.imaging.evaluate`: PSNR/SSIM on Y, `scale` border). Each
result is cached in the JSON under a key holding its whole configuration (`calib.report_cache`: model
and checkpoint sha256, calibration folder, seed, schedule, search, code version), and the JSON is
rewritten after every configuration, so an interrupted or extended run resumes where it stopped. JSON
files of partial runs (e.g. one process per model) are reused only when named with `--merge`; a table
renders only rows of the invocation's own configuration.

Every row states what it stores per activation value and how many convolutions a quantized layer
runs (`storage`): uniform and `b-bit` one b-bit code, 1 conv; `split` two b-bit codes, 2 convs;
`paper` b+1 bits (a 2^b-level dense grid plus two 2^(b-1)-level tails; simulated, no integer kernel).
The W4A4 / W8A8 claims compare methods at equal storage (one code per value) and show the two-code and
paper budgets in their own columns.

The finetuning rows (drq+vft, drq+saft) can use a shorter schedule than the paper's 100 images x 10
epochs (`--ft-images`, `--epochs`); the Markdown states the schedule actually used.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from calib.errors import CalibError, MissingDependency
from calib.report_cache import (
    BATCH,
    RowConfig,
    file_sha256,
    folder_digest,
    load_results,
    merge_results,
    row_key,
)
from drq.artifacts import atomic_write_bytes, atomic_write_text, check_writable_folder
from drq.cli_args import CommandParser, thread_count
from drq.recipe import (
    BREAKPOINT_INITS,
    DUAL_BUDGETS,
    METHODS,
    ModelIdentity,
    searches_bbit_format,
    searches_split_breakpoint,
)

BASELINES = ("minmax", "percentile", "mse", "entropy")
BUDGET_OF = {"fp8": "fp8", "mse+gptq": "uniform"}  # rows outside the TensorRT-style BASELINES
"""Methods outside the uniform baselines and the dual-region budgets, with their one budget."""
RESULTS_JSON = "ptq_results.json"
RESULTS_MD = "ptq_results.md"
RESULTS_PNG = "ptq_psnr_vs_bits.png"


def finetunes(method: str) -> bool:
    """Methods whose rows use the finetuning schedule (--ft-images, --epochs): drq+vft, *saft."""
    return method.endswith(("+vft", "+saft"))


@dataclass(frozen=True)
class Job:
    """One row cell group: a model, a method/budget and a bit width (bits 32 = the FP model)."""

    arch: str
    scale: int
    method: str
    budget: str
    bits: int
    images: int
    epochs: int
    crop: int
    bp_init: str = "percentile"

    @property
    def name(self) -> str:
        """The readable part of the cache key (`calib.report_cache.row_key` adds the config digest)."""
        if self.method == "fp":
            return f"{self.arch}_x{self.scale}/fp"
        sched = f"i{self.images}c{self.crop}" + (f"e{self.epochs}" if finetunes(self.method) else "")
        # Rows cached before the split breakpoint search existed used the percentile: their keys stay valid.
        init = "/bp-mse" if self.searches_breakpoint else ("/fmt-mse" if self.searches_format else "")
        return f"{self.arch}_x{self.scale}/{self.method}/{self.budget}/W{self.bits}A{self.bits}/{sched}{init}"

    @property
    def searches_breakpoint(self) -> bool:
        return searches_split_breakpoint(self.method, self.budget, self.bp_init)

    @property
    def searches_format(self) -> bool:
        """b-bit rows whose code split and breakpoint come from `calib.bbit_format`."""
        return searches_bbit_format(self.method, self.budget, self.bp_init)


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq report", description="PTQ results grid: PSNR/SSIM-Y of every method x bits x budget."
    )
    p.add_argument("--archs", nargs="+", default=["imdn", "pan"])
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--bits", nargs="+", type=int, default=[4, 6, 8])
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument(
        "--budgets",
        nargs="+",
        choices=DUAL_BUDGETS,
        default=list(DUAL_BUDGETS),
        help="dual-region budgets of the drq rows (baselines always use uniform)",
    )
    p.add_argument(
        "--ft-budgets",
        nargs="+",
        choices=DUAL_BUDGETS,
        default=None,
        help="budgets of the drq+vft / drq+saft rows (default: --budgets)",
    )
    p.add_argument(
        "--bp-init",
        choices=BREAKPOINT_INITS,
        default="mse",
        help="breakpoint of the split rows: MSE search (default) or the paper's 99th percentile",
    )
    p.add_argument("--sets", nargs="+", default=["Set5", "Set14", "B100"])
    p.add_argument(
        "--weights-dir",
        type=Path,
        default=Path("../shared/sr_weights"),
        help="folder holding the official checkpoints (imdn_x4.pth, carn_m_multiscale.pth, ...)",
    )
    p.add_argument(
        "--bench-dir", type=Path, default=Path("../shared/sr_bench"), help="folder of <set>/x<scale>/{HR,LR}"
    )
    p.add_argument("--calib", type=Path, default=Path("../shared/sr_calib/bsd200"))
    p.add_argument("--images", type=int, default=100, help="calibration images of the non-finetuned rows")
    p.add_argument(
        "--ft-images",
        type=int,
        default=None,
        help="calibration images of drq+vft / drq+saft (default --images)",
    )
    p.add_argument("--epochs", type=int, default=10, help="finetuning epochs of drq+vft / drq+saft")
    p.add_argument("--crop", type=int, default=None, help="LR crop side (default 96; 80 at x4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=thread_count, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="render the tables from cached results only; configurations not cached are left out",
    )
    p.add_argument("--note", default="", help="a sentence added under the schedule in the Markdown")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=[],
        help="report JSON files of other runs whose rows are reused (same configuration only)",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder (Markdown, JSON, PNG)")
    return p


def plan(args: argparse.Namespace) -> list[Job]:
    """Every configuration of the grid, FP rows first."""
    from calib.quantize_command import default_crop

    crop = args.crop if args.crop is not None else default_crop(args.scale)
    ft_images = args.ft_images if args.ft_images is not None else args.images
    jobs: list[Job] = []
    for arch in args.archs:
        jobs.append(Job(arch, args.scale, "fp", "-", 32, 0, 0, crop))
        for bits in args.bits:
            for method in args.methods:
                finetuned = finetunes(method)
                if method == "fp8" and bits != 8:
                    continue  # FP8 (E4M3) exists at 8 bits only
                budgets = (
                    [BUDGET_OF.get(method, "uniform")]
                    if method in BASELINES or method in BUDGET_OF
                    else list(args.ft_budgets if finetuned and args.ft_budgets else args.budgets)
                )
                for budget in budgets:
                    jobs.append(
                        Job(
                            arch,
                            args.scale,
                            method,
                            budget,
                            bits,
                            ft_images if finetuned else args.images,
                            args.epochs if finetuned else 0,
                            crop,
                            args.bp_init,
                        )
                    )
    return jobs


def _checkpoint_path(weights_dir: Path, arch: str, scale: int) -> Path:
    """The official checkpoint of (arch, scale) in `weights_dir` (CARN-M has one file for all scales)."""
    from calib.models import get_arch

    name = get_arch(arch).checkpoint_file(scale)
    if name is None:
        raise CalibError(f"--archs: {arch} has no official checkpoint for x{scale}")
    return weights_dir / name


def _check(args: argparse.Namespace) -> None:
    for arch in args.archs:
        path = _checkpoint_path(args.weights_dir, arch, args.scale)
        if not path.is_file():
            raise CalibError(f"{path}: no such checkpoint")
    for name in args.sets:
        folder = args.bench_dir / name / f"x{args.scale}"
        if not folder.is_dir():
            raise CalibError(f"{folder}: no such benchmark folder")
    if not args.calib.is_dir():
        raise CalibError(f"{args.calib}: no such calibration folder")
    check_writable_folder(args.out)
    for bits in args.bits:
        if not 2 <= bits <= 8:
            raise CalibError(f"--bits: {bits} is not in 2..8")


def _run_job(
    job: Job,
    args: argparse.Namespace,
    fp_models: dict[str, Any],
    crops_cache: dict[tuple[int, int], Any],
    datasets: list[Any],
    progress: Any,
) -> dict[str, Any]:
    import torch

    from calib.calibrate import QuantizeConfig, make_batches, quantize
    from calib.inference import torch_upscaler
    from calib.models import load_pretrained
    from drq.imaging.datasets import calib_crops
    from drq.imaging.evaluate import evaluate_dataset

    if job.arch not in fp_models:
        fp_models[job.arch] = load_pretrained(
            job.arch, job.scale, _checkpoint_path(args.weights_dir, job.arch, job.scale)
        )
    loaded = fp_models[job.arch]
    model = copy.deepcopy(loaded.model)
    row: dict[str, Any] = {
        "arch": job.arch,
        "scale": job.scale,
        "method": job.method,
        "budget": job.budget,
        "bp_init": "mse" if job.searches_breakpoint or job.searches_format else "percentile",
        "bits": job.bits,
        "images": job.images,
        "epochs": job.epochs,
        "crop": job.crop,
    }
    started = time.perf_counter()
    if job.method != "fp":
        key = (job.images, job.crop)
        if key not in crops_cache:
            crops_cache[key] = calib_crops(args.calib, job.scale, job.crop, job.images, args.seed)
        config = QuantizeConfig(
            method=job.method,
            w_bits=job.bits,
            a_bits=job.bits,
            budget=job.budget,
            images=job.images,
            crop=job.crop,
            epochs=job.epochs,
            breakpoint_init=job.bp_init,
            seed=args.seed,
            source=args.calib.name,
        )
        recipe, stats = quantize(
            model,
            ModelIdentity(job.arch, job.scale, loaded.checkpoint_sha256),
            make_batches(crops_cache[key], BATCH),
            config,
            progress,
        )
        row["quantize_s"] = round(stats.wall_s, 2)
        row["recipe_sha256"] = recipe.sha256()
        if stats.finetune is not None:
            row["finetune"] = stats.finetune.to_dict()
    torch.manual_seed(0)
    upscale = torch_upscaler(model)
    scores = {}
    for dataset in datasets:
        result = evaluate_dataset(upscale, dataset, job.scale, None)
        scores[result.name] = {"psnr": round(result.psnr, 4), "ssim": round(result.ssim, 5)}
    row["sets"] = scores
    row["seconds"] = round(time.perf_counter() - started, 2)
    return row


STORAGE = {
    "fp": ("32 (float)", "1"),
    "uniform": ("b (one code)", "1"),
    "b-bit": ("b (one code)", "1"),
    "split": ("2b (two codes)", "2"),
    "paper": ("b+1 (simulated)", "1"),
    "fp8": ("8 (FP8 E4M3)", "1"),
}
"""budget -> (bits stored per activation value, convolutions per quantized layer)."""


def storage(row: dict[str, Any]) -> tuple[str, str]:
    """(bits per activation value, convs per quantized layer) of a row, as the table states them."""
    return STORAGE["fp" if row["method"] == "fp" else row["budget"]]


def _storage_words(budget: str, bits: int) -> str:
    """ "8 bits/value, 2 convs" for a budget at `bits` (the baselines store `bits` bits, 1 conv)."""
    per_value = {"split": 2 * bits, "paper": bits + 1}.get(budget, bits)
    convs = 2 if budget == "split" else 1
    return f"{per_value} bits/value, {convs} conv{'s' if convs > 1 else ''}"


def _row_label(row: dict[str, Any]) -> str:
    return (
        "FP32"
        if row["method"] == "fp"
        else (row["method"] if row["budget"] == "uniform" else f"{row['method']} ({row['budget']})")
    )


def _targets(rows: list[dict[str, Any]], sets: list[str]) -> list[str]:
    """Check the issue's targets on whatever rows exist; one line each."""
    lines = []
    by = {(r["arch"], r["method"], r["budget"], r["bits"]): r for r in rows}
    for arch in sorted({r["arch"] for r in rows}):
        fp = by.get((arch, "fp", "-", 32))
        if fp is None:
            continue
        for budget in DUAL_BUDGETS:
            saft4 = by.get((arch, "drq+saft", budget, 4))
            if saft4 is not None:
                base = [r for (a, m, _, b), r in by.items() if a == arch and m in BASELINES and b == 4]
                beats = all(
                    saft4["sets"][s]["psnr"] > r["sets"][s]["psnr"]
                    for r in base
                    for s in sets
                    if s in saft4["sets"] and s in r["sets"]
                )
                gap = (
                    fp["sets"]["Set5"]["psnr"] - saft4["sets"]["Set5"]["psnr"]
                    if "Set5" in saft4["sets"]
                    else float("nan")
                )
                versus = (
                    f"better than all {len(base)} baselines on every set: {'yes' if beats else 'NO'}"
                    if base
                    else "no baseline rows in this table to compare with"
                )
                lines.append(
                    f"- {arch} W4A4 drq+saft ({budget}, {_storage_words(budget, 4)}): {versus}; "
                    f"Set5 gap to FP {gap:.2f} dB ({'within' if gap <= 0.6 else 'OUTSIDE'} 0.6 dB)"
                )
            saft8 = by.get((arch, "drq+saft", budget, 8))
            if saft8 is not None and budget in ("split", "b-bit"):
                gaps = {
                    s: fp["sets"][s]["psnr"] - saft8["sets"][s]["psnr"] for s in sets if s in saft8["sets"]
                }
                worst = max(gaps.values()) if gaps else float("nan")
                lines.append(
                    f"- {arch} W8A8 drq+saft ({budget}, {_storage_words(budget, 8)}): "
                    f"largest gap to FP {worst:.3f} dB "
                    f"({'within' if worst <= 0.05 else 'OUTSIDE'} 0.05 dB)"
                )
    return lines


W4A4_GAP_TARGETS = {
    ("imdn", "split"): 0.6,
    ("pan", "split"): 0.3,
    ("imdn", "b-bit"): 1.5,
    ("pan", "b-bit"): 0.8,
}
"""Issue 11 item 3: the largest W4A4 Set5 gap to FP allowed for IMDN / PAN x4, two codes and one code."""


def _w4a4_gap_targets(rows: list[dict[str, Any]]) -> list[str]:
    """One line per W4A4 dual-region row of a network and budget with a gap target (every drq method)."""
    fp = {r["arch"]: r for r in rows if r["method"] == "fp" and "Set5" in r["sets"]}
    lines = []
    for row in rows:
        limit = W4A4_GAP_TARGETS.get((row["arch"], row["budget"]))
        if limit is None or row["bits"] != 4 or row["arch"] not in fp or "Set5" not in row["sets"]:
            continue
        gap = fp[row["arch"]]["sets"]["Set5"]["psnr"] - row["sets"]["Set5"]["psnr"]
        lines.append(
            f"- {row['arch']} W4A4 {row['method']} ({row['budget']}, {_storage_words(row['budget'], 4)}): "
            f"Set5 gap to FP {gap:.2f} dB (target <= {limit}: {'met' if gap <= limit else 'missed'})"
        )
    return lines


BBIT_SEARCHED = "code split and breakpoint from the MSE search over the signed histogram (calib.bbit_format)"
BBIT_FIXED = "the fixed split D = P = N = 2^(b-2)-1 and the 99th percentile"


def render_markdown(command: str, rows: list[dict[str, Any]], args: argparse.Namespace, wall: float) -> str:
    sets = list(args.sets)
    bits = sorted({r["bits"] for r in rows if r["method"] != "fp"})
    ft_images = args.ft_images if args.ft_images is not None else args.images
    out = [
        f"`{command}`",
        "",
        "# PTQ results: PSNR-Y (dB) / SSIM-Y",
        "",
        f"Calibration: {args.calib.name}, seed {args.seed}, LR crops {rows[0]['crop'] if rows else '-'} px, "
        f"batch 2. Baselines and drq: {args.images} images. "
        f"drq+vft / drq+saft: {ft_images} images x {args.epochs} epochs "
        f"(the paper: 100 x 10; the same for every +saft row). Head, upsampler and tail convs at 8 bits. "
        f"Weights per-channel (minmax for baselines, MSE search for drq; drq+gptq* and drq+adaround* "
        f"then choose the integer codes, calib/gptq.py and calib/adaround.py). Breakpoint of the split rows: "
        f"{'MSE search over the |x| histogram' if args.bp_init == 'mse' else 'the 99th percentile'}; "
        f"b-bit rows: "
        f"{BBIT_SEARCHED if args.bp_init == 'mse' else BBIT_FIXED}; "
        f"paper rows: the 99th percentile. `act bits/value`: bits stored per activation value of a "
        f"quantized layer (b = the column's A bits); `convs/layer`: convolutions it runs. "
        f"Machine: {platform.machine()}, CPU. "
        f"Wall time of this invocation: {wall / 60:.1f} min (cached rows cost nothing).",
        "",
    ]
    if args.note:
        out += [args.note, ""]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        arch_rows = [r for r in rows if r["arch"] == arch]
        out += [f"## {arch} x{arch_rows[0]['scale']}", ""]
        header = "| method | act bits/value | convs/layer |" + "".join(
            f" W{b}A{b} {s} |" for b in bits for s in sets
        )
        out += [header, "|---|---|---|" + "---|" * (len(bits) * len(sets))]
        labels = list(dict.fromkeys(_row_label(r) for r in arch_rows))
        for label in labels:
            cells = []
            for b in bits:
                match = [
                    r for r in arch_rows if _row_label(r) == label and (r["bits"] == b or r["method"] == "fp")
                ]
                for s in sets:
                    if match and s in match[0]["sets"]:
                        sc = match[0]["sets"][s]
                        cells.append(f" {sc['psnr']:.2f} / {sc['ssim']:.4f} |")
                    else:
                        cells.append(" - |")
            act_bits, convs = storage(next(r for r in arch_rows if _row_label(r) == label))
            out.append(f"| {label} | {act_bits} | {convs} |" + "".join(cells))
        out.append("")
    out += equal_storage_section(rows, sets)
    lines = _targets(rows, sets) + _w4a4_gap_targets(rows)
    if lines:
        out += ["## Targets", ""] + lines + [""]
    out += [f"Plot: `{RESULTS_PNG}`; every number with its schedule and timings: `{RESULTS_JSON}`.", ""]
    return "\n".join(out)


def render_plot(rows: list[dict[str, Any]], path: Path, dataset: str = "Set5") -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise MissingDependency("the report plot needs matplotlib (pip install 'drq[report]')") from err
    archs = list(dict.fromkeys(r["arch"] for r in rows))
    fig, axes = plt.subplots(1, len(archs), figsize=(6 * len(archs), 4.5), squeeze=False)
    for ax, arch in zip(axes[0], archs, strict=True):
        arch_rows = [r for r in rows if r["arch"] == arch and dataset in r["sets"]]
        for label in dict.fromkeys(_row_label(r) for r in arch_rows if r["method"] != "fp"):
            pts = sorted((r["bits"], r["sets"][dataset]["psnr"]) for r in arch_rows if _row_label(r) == label)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        fp = [r for r in arch_rows if r["method"] == "fp"]
        if fp:
            ax.axhline(fp[0]["sets"][dataset]["psnr"], color="k", linestyle="--", label="FP32")
        ax.set_title(f"{arch} x{arch_rows[0]['scale'] if arch_rows else ''}: {dataset}")
        ax.set_xlabel("bits (W = A)")
        ax.set_ylabel("PSNR-Y (dB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class RunContext:
    """Per-invocation facts that enter every row's configuration (hashed once)."""

    checkpoints: dict[str, str]  # arch -> checkpoint sha256
    calib: str
    calib_digest: str
    seed: int


def run_context(args: argparse.Namespace) -> RunContext:
    shas = {arch: file_sha256(_checkpoint_path(args.weights_dir, arch, args.scale)) for arch in args.archs}
    return RunContext(shas, args.calib.name, folder_digest(args.calib), args.seed)


def job_config(job: Job, ctx: RunContext) -> RowConfig:
    """The configuration of one job (FP rows depend on the checkpoint only)."""
    fp = job.method == "fp"
    return RowConfig(
        arch=job.arch,
        scale=job.scale,
        method=job.method,
        budget=job.budget,
        bits=job.bits,
        checkpoint_sha256=ctx.checkpoints[job.arch],
        calib="" if fp else ctx.calib,
        calib_digest="" if fp else ctx.calib_digest,
        seed=0 if fp else ctx.seed,
        images=job.images,
        crop=0 if fp else job.crop,
        epochs=job.epochs,
        batch=0 if fp else BATCH,
        bp_init="-" if fp else ("mse" if job.searches_breakpoint or job.searches_format else "percentile"),
    )


def _legacy_checkpoint(weights_dir: Path, arch: str, scale: int) -> str:
    return file_sha256(_checkpoint_path(weights_dir, arch, scale))


def load_cache(args: argparse.Namespace, json_path: Path) -> dict[str, Any]:
    """The invocation's own JSON plus the `--merge` files, keyed by configuration."""
    cache = load_results(json_path, _parser().parse_known_args, _legacy_checkpoint)
    for path in args.merge:
        if not path.is_file():
            raise CalibError(f"{path}: no such report JSON (--merge)")
        merge_results(cache, load_results(path, _parser().parse_known_args, _legacy_checkpoint), path)
    return cache


def _code_version() -> str:
    """The git commit of the code (informational: rows are keyed on `CODE_VERSION`, not on this)."""
    import subprocess

    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _write_json(path: Path, command: str, cache: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps({"command": command, "results": cache}, indent=1) + "\n")


def main(argv: list[str]) -> int:
    """Entry point of `drq report`."""
    args = _parser().parse_args(argv)
    _check(args)
    import torch

    from drq.imaging.datasets import open_dataset
    from drq.imaging.progress import Progress

    if args.threads:
        torch.set_num_threads(args.threads)
    command = "drq report " + " ".join(argv)
    json_path = args.out / RESULTS_JSON
    cache = load_cache(args, json_path)
    ctx = run_context(args)
    jobs = plan(args)
    datasets = [open_dataset(args.bench_dir / name / f"x{args.scale}", args.scale) for name in args.sets]
    fp_models: dict[str, Any] = {}
    crops: dict[tuple[int, int], Any] = {}
    code = _code_version()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for i, job in enumerate(jobs):
        config = job_config(job, ctx)
        key = row_key(job.name, config)
        cached = cache.get(key)
        if cached is not None and all(s in cached.get("sets", {}) for s in datasets_names(datasets)):
            rows.append(cached)
            continue
        if args.cached_only:
            continue
        print(f"[{i + 1}/{len(jobs)}] {key}", flush=True)
        row = _run_job(job, args, fp_models, crops, datasets, None if args.quiet else Progress)
        row.update(config=asdict(config), code=code)
        cache[key] = row
        rows.append(row)
        print(
            "    "
            + "  ".join(f"{s} {v['psnr']:.2f}" for s, v in row["sets"].items())
            + f"  ({row['seconds']:.0f} s)",
            flush=True,
        )
        _write_json(json_path, command, cache)
    wall = time.perf_counter() - started
    _write_json(json_path, command, cache)
    atomic_write_text(args.out / RESULTS_MD, render_markdown(command, rows, args, wall))
    render_plot(rows, args.out / RESULTS_PNG)
    print(f"wrote {args.out / RESULTS_MD}, {json_path.name}, {RESULTS_PNG} ({wall / 60:.1f} min)")
    return 0


def datasets_names(datasets: list[Any]) -> list[str]:
    return [d.name for d in datasets]


MARGIN_W4A4 = 0.3
"""dB the one-code drq+saft row must gain over the best uniform baseline on every set at W4A4."""


def _psnr(row: dict[str, Any] | None, dataset: str) -> float | None:
    if row is None or dataset not in row["sets"]:
        return None
    return float(row["sets"][dataset]["psnr"])


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _best_uniform(rows: list[dict[str, Any]], arch: str, bits: int, dataset: str) -> tuple[float, str] | None:
    scores = [
        (p, r["method"])
        for r in rows
        if r["arch"] == arch and r["bits"] == bits and r["method"] in BASELINES
        for p in [_psnr(r, dataset)]
        if p is not None
    ]
    return max(scores) if scores else None


def _equal_storage_table(rows: list[dict[str, Any]], arch: str, bits: int, sets: list[str]) -> list[str]:
    by = {(r["method"], r["budget"]): r for r in rows if r["arch"] == arch and r["bits"] == bits}
    head = (
        f"| W{bits}A{bits} {arch} | best uniform ({bits} bits, 1 conv) | drq b-bit ({bits} bits, 1 conv) "
        f"| drq+saft b-bit ({bits} bits, 1 conv) | drq+saft b-bit - best uniform "
        f"| drq+saft split ({2 * bits} bits, 2 convs) | drq paper ({bits + 1} bits, simulated) |"
    )
    out = [head, "|---|---|---|---|---|---|---|"]
    for dataset in sets:
        best = _best_uniform(rows, arch, bits, dataset)
        saft = _psnr(by.get(("drq+saft", "b-bit")), dataset)
        delta = None if best is None or saft is None else saft - best[0]
        out.append(
            f"| {dataset} | {'-' if best is None else f'{best[0]:.2f} ({best[1]})'} "
            f"| {_cell(_psnr(by.get(('drq', 'b-bit')), dataset))} | {_cell(saft)} "
            f"| {'-' if delta is None else f'{delta:+.2f}'} "
            f"| {_cell(_psnr(by.get(('drq+saft', 'split')), dataset))} "
            f"| {_cell(_psnr(by.get(('drq', 'paper')), dataset))} |"
        )
    return out


def _equal_storage_claim(rows: list[dict[str, Any]], arch: str, bits: int, sets: list[str]) -> str | None:
    saft = next(
        (
            r
            for r in rows
            if r["arch"] == arch
            and r["bits"] == bits
            and r["method"] == "drq+saft"
            and r["budget"] == "b-bit"
        ),
        None,
    )
    margin = MARGIN_W4A4 if bits == 4 else 0.0
    deltas = []
    for dataset in sets:
        best, score = _best_uniform(rows, arch, bits, dataset), _psnr(saft, dataset)
        if best is not None and score is not None:
            deltas.append(score - best[0])
    if not deltas:
        return None
    met = len(deltas) == len(sets) and min(deltas) >= margin - 1e-9
    return (
        f"- {arch} W{bits}A{bits} at equal storage: drq+saft (b-bit) - best uniform baseline >= "
        f"{margin:.1f} dB on every set: {'yes' if met else 'NO'} (smallest {min(deltas):+.2f} dB "
        f"over {len(deltas)} of {len(sets)} sets)"
    )


def equal_storage_section(rows: list[dict[str, Any]], sets: list[str]) -> list[str]:
    """Per arch, W4A4 and W8A8: one-code methods side by side, the two-code and paper rows apart."""
    out: list[str] = []
    claims: list[str] = []
    for arch in dict.fromkeys(r["arch"] for r in rows):
        for bits in (4, 8):
            if not any(r["arch"] == arch and r["bits"] == bits for r in rows):
                continue
            out += _equal_storage_table(rows, arch, bits, sets) + [""]
            claim = _equal_storage_claim(rows, arch, bits, sets)
            if claim is not None:
                claims.append(claim)
    if not out:
        return []
    head = [
        "## At equal storage",
        "",
        "One b-bit code per activation value and one conv per layer (uniform baselines and drq b-bit) "
        "side by side; the two-code split budget and the paper's simulated grid in their own columns.",
        "",
    ]
    return head + out + claims + ([""] if claims else [])
