"""`drq report`: the PTQ results grid (models x methods x bits x budgets x datasets) as Markdown, JSON, PNG.

Every configuration is quantized with `calib.calibrate.quantize` from the same seeded calibration crops
and scored with the papers' protocol (`drq.imaging.evaluate`: PSNR/SSIM on Y, `scale` border). Each
result is cached in the JSON under a key that includes its schedule, and the JSON is rewritten after
every configuration, so an interrupted or extended run resumes where it stopped. Results cached in
`<out>/*/ptq_results.json` (partial runs, e.g. one process per model) are reused as well.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from calib.errors import CalibError, MissingDependency
from drq.artifacts import atomic_write_bytes, atomic_write_text, check_writable_folder
from drq.cli_args import CommandParser
from drq.recipe import BREAKPOINT_INITS, DUAL_BUDGETS, METHODS, searches_split_breakpoint

BASELINES = ("minmax", "percentile", "mse", "entropy")
RESULTS_JSON = "ptq_results.json"
RESULTS_MD = "ptq_results.md"
RESULTS_PNG = "ptq_psnr_vs_bits.png"


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
    def key(self) -> str:
        if self.method == "fp":
            return f"{self.arch}_x{self.scale}/fp"
        sched = f"i{self.images}c{self.crop}" + (
            f"e{self.epochs}" if self.method in ("drq+vft", "drq+saft") else ""
        )
        # Rows cached before the split breakpoint search existed used the percentile: their keys stay valid.
        init = "/bp-mse" if self.searches_breakpoint else ""
        return f"{self.arch}_x{self.scale}/{self.method}/{self.budget}/W{self.bits}A{self.bits}/{sched}{init}"

    @property
    def searches_breakpoint(self) -> bool:
        return searches_split_breakpoint(self.method, self.budget, self.bp_init)


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
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="render the tables from cached results only; configurations not cached are left out",
    )
    p.add_argument("--note", default="", help="a sentence added under the schedule in the Markdown")
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
                finetuned = method in ("drq+vft", "drq+saft")
                budgets = (
                    ["uniform"]
                    if method in BASELINES
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
    if args.threads < 0:  # torch.set_num_threads raises a RuntimeError for it
        raise CalibError(f"--threads: must be >= 0, got {args.threads}")
    for bits in args.bits:
        if not 2 <= bits <= 8:
            raise CalibError(f"--bits: {bits} is not in 2..8")


def _load_cache(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise CalibError(
            f"{path}: cannot read the cached results ({err.__class__.__name__}); move it away"
        ) from err
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict):
        raise CalibError(f"{path}: not a drq report JSON (no 'results' object)")
    return results


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
        "bp_init": "mse" if job.searches_breakpoint else "percentile",
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
            job.arch,
            job.scale,
            loaded.checkpoint_sha256,
            "",
            make_batches(crops_cache[key], 2),
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
                    f"- {arch} W4A4 drq+saft ({budget}): {versus}; Set5 gap to FP {gap:.2f} dB "
                    f"({'within' if gap <= 0.6 else 'OUTSIDE'} 0.6 dB)"
                )
            saft8 = by.get((arch, "drq+saft", budget, 8))
            if saft8 is not None and budget in ("split", "b-bit"):
                gaps = {
                    s: fp["sets"][s]["psnr"] - saft8["sets"][s]["psnr"] for s in sets if s in saft8["sets"]
                }
                worst = max(gaps.values()) if gaps else float("nan")
                lines.append(
                    f"- {arch} W8A8 drq+saft ({budget}): largest gap to FP {worst:.3f} dB "
                    f"({'within' if worst <= 0.05 else 'OUTSIDE'} 0.05 dB)"
                )
    return lines


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
        f"(the paper: 100 x 10). Head, upsampler and tail convs at 8 bits. Weights per-channel "
        f"(minmax for baselines, MSE search for drq). Breakpoint of the split rows: "
        f"{'MSE search over the |x| histogram' if args.bp_init == 'mse' else 'the 99th percentile'}; "
        f"paper and b-bit rows: the 99th percentile. Machine: {platform.machine()}, CPU. "
        f"Wall time of this invocation: {wall / 60:.1f} min (cached rows cost nothing).",
        "",
    ]
    if args.note:
        out += [args.note, ""]
    for arch in dict.fromkeys(r["arch"] for r in rows):
        arch_rows = [r for r in rows if r["arch"] == arch]
        out += [f"## {arch} x{arch_rows[0]['scale']}", ""]
        header = "| method |" + "".join(f" W{b}A{b} {s} |" for b in bits for s in sets)
        out += [header, "|---|" + "---|" * (len(bits) * len(sets))]
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
            out.append(f"| {label} |" + "".join(cells))
        out.append("")
    lines = _targets(rows, sets)
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
    cache: dict[str, Any] = {}
    # Results of partial runs written to subfolders (e.g. one process per model) are reused too.
    for part in sorted(args.out.glob(f"*/{RESULTS_JSON}")):
        cache.update(_load_cache(part))
    cache.update(_load_cache(json_path))
    jobs = plan(args)
    datasets = [open_dataset(args.bench_dir / name / f"x{args.scale}", args.scale) for name in args.sets]
    fp_models: dict[str, Any] = {}
    crops: dict[tuple[int, int], Any] = {}
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    for i, job in enumerate(jobs):
        cached = cache.get(job.key)
        if cached is not None and all(s in cached.get("sets", {}) for s in datasets_names(datasets)):
            rows.append(cached)
            continue
        if args.cached_only:
            continue
        print(f"[{i + 1}/{len(jobs)}] {job.key}", flush=True)
        row = _run_job(job, args, fp_models, crops, datasets, None if args.quiet else Progress)
        cache[job.key] = row
        rows.append(row)
        print(
            "    "
            + "  ".join(f"{s} {v['psnr']:.2f}" for s, v in row["sets"].items())
            + f"  ({row['seconds']:.0f} s)",
            flush=True,
        )
        atomic_write_text(json_path, json.dumps({"command": command, "results": cache}, indent=1) + "\n")
    wall = time.perf_counter() - started
    atomic_write_text(json_path, json.dumps({"command": command, "results": cache}, indent=1) + "\n")
    atomic_write_text(args.out / RESULTS_MD, render_markdown(command, rows, args, wall))
    render_plot(rows, args.out / RESULTS_PNG)
    print(f"wrote {args.out / RESULTS_MD}, {json_path.name}, {RESULTS_PNG} ({wall / 60:.1f} min)")
    return 0


def datasets_names(datasets: list[Any]) -> list[str]:
    return [d.name for d in datasets]
