"""`drq zoo`: FP32 PSNR/SSIM-Y of every pretrained model of the zoo on the benchmark sets.

Example::

    drq zoo --weights-dir ../shared/sr_weights --bench-dir ../shared/sr_bench --out results/zoo_fp32

Every architecture of `calib.models.ARCHS` with official weights is evaluated at each scale that has
both a checkpoint (`ArchSpec.checkpoints`) and a benchmark folder ``<bench-dir>/<set>/x<scale>``, with
the papers' protocol (`drq.imaging.evaluate`: LR from the folder, SR rounded to uint8, Y channel
unrounded, `scale` border). One line is printed per (model, scale, set), and ``<out>.json`` and
``<out>.md`` are rewritten atomically after each, so an interrupted run keeps what it measured. The
Markdown starts with the command that produced it and compares with the PSNR published in
``shared/README.md`` (measured there with the same LR images).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from calib.errors import CalibError, ModelError
from drq.cli_args import CommandParser
from drq.errors import ImageError

SCHEMA_VERSION = 1
DEFAULT_SETS = ("Set5", "Set14", "B100")
Y_CONVENTION = "BT.601 Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255, float (not rounded)"

# PSNR-Y (dB) published in shared/README.md, measured with the same sr_bench LR images, and the
# tolerance this project holds itself to: (arch, scale, set) -> (psnr, tolerance).
PUBLISHED: dict[tuple[str, int, str], tuple[float, float]] = {
    ("imdn", 4, "Set5"): (32.21, 0.02),
    ("imdn", 4, "Set14"): (28.58, 0.02),
    ("imdn", 4, "B100"): (27.56, 0.02),
    ("imdn", 2, "Set5"): (38.00, 0.02),
    ("pan", 4, "Set5"): (32.13, 0.02),
    ("pan", 4, "Set14"): (28.61, 0.02),
    ("pan", 4, "B100"): (27.59, 0.02),
    ("carn_m", 4, "Set5"): (31.88, 0.05),
    ("rfdn", 4, "Set5"): (32.16, 0.05),
    ("rlfn", 4, "Set5"): (32.10, 0.05),
    ("imdn_ntire", 4, "Set5"): (32.25, 0.05),
}


@dataclass(frozen=True)
class ZooJob:
    """One evaluation: a pretrained model at one scale on one benchmark set."""

    arch: str
    scale: int
    dataset: str
    checkpoint: Path
    folder: Path


@dataclass(frozen=True)
class ZooRow:
    """The scores of one `ZooJob` and the published number it is compared with."""

    arch: str
    scale: int
    dataset: str
    images: int
    psnr: float
    ssim: float
    seconds: float
    checkpoint: str
    checkpoint_sha256: str
    published: float | None
    tolerance: float | None
    reused: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ZooRow:
        """Rebuild a row written by `to_dict` (extra keys ignored), marked as reused."""
        names = [f.name for f in fields(cls) if f.name != "reused"]
        return cls(**{name: data[name] for name in names}, reused=True)

    @property
    def diff(self) -> float | None:
        """Measured minus published PSNR (None without a published number)."""
        return None if self.published is None else self.psnr - self.published

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict including `diff` and whether it is within the tolerance."""
        out = asdict(self)
        out["diff"] = self.diff
        out["within_tolerance"] = (
            None if self.diff is None or self.tolerance is None else abs(self.diff) <= self.tolerance + 1e-9
        )
        return out


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq zoo", description="FP32 PSNR/SSIM-Y of every pretrained zoo model on SR benchmarks."
    )
    p.add_argument("--weights-dir", type=Path, required=True, help="folder of the official checkpoints")
    p.add_argument("--bench-dir", type=Path, required=True, help="folder with <set>/x<scale>/{HR,LR}")
    p.add_argument(
        "--out", type=Path, default=Path("results/zoo_fp32"), help="writes <out>.json and <out>.md"
    )
    p.add_argument(
        "--sets", nargs="+", default=list(DEFAULT_SETS), help="benchmark sets (default: %(default)s)"
    )
    p.add_argument(
        "--archs", nargs="+", default=None, help="only these architectures (default: all pretrained)"
    )
    p.add_argument("--scales", nargs="+", type=int, default=None, help="only these scales (default: all)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse rows of an existing <out>.json with the same checkpoint sha256 and image count",
    )
    return p


def plan_jobs(
    weights_dir: Path,
    bench_dir: Path,
    sets: list[str],
    archs: list[str] | None = None,
    scales: list[int] | None = None,
) -> list[ZooJob]:
    """Every (pretrained model, scale, set) with a checkpoint and a benchmark folder.

    Ordered by scale, largest first (most published numbers are x4), then by `sets`, then registry order,
    so an interrupted run has every model on the first sets.

    Raises:
        ModelError: The weights folder or a needed checkpoint is missing, or an unknown arch.
        ImageError: The bench folder is missing, a set has no folder at any planned scale, or nothing
            is left to evaluate.
    """
    from calib.models import ARCHS, get_arch

    if not weights_dir.is_dir():
        raise ModelError(f"{weights_dir}: no such weights folder")
    if not bench_dir.is_dir():
        raise ImageError(f"{bench_dir}: no such benchmark folder")
    specs = [get_arch(name) for name in archs] if archs else [s for s in ARCHS.values() if s.pretrained]
    jobs: list[ZooJob] = []
    for spec in specs:
        if not spec.checkpoints:
            raise ModelError(f"{spec.name}: no pretrained checkpoint in the zoo")
        for scale, filename in spec.checkpoints:
            if scales and scale not in scales:
                continue
            folders = [(name, bench_dir / name / f"x{scale}") for name in sets]
            folders = [(name, folder) for name, folder in folders if folder.is_dir()]
            if folders and not (weights_dir / filename).is_file():
                raise ModelError(f"{weights_dir / filename}: no such checkpoint file ({spec.name} x{scale})")
            jobs += [
                ZooJob(spec.name, scale, name, weights_dir / filename, folder) for name, folder in folders
            ]
    if not jobs:
        raise ImageError(
            f"{bench_dir}: no benchmark folder <set>/x<scale> for sets {', '.join(sets)} "
            f"at any scale of the selected models"
        )
    for name in sets:
        if not any(job.dataset == name for job in jobs):
            raise ImageError(f"{bench_dir / name}: no x<scale> folder for any selected model's scale")
    # Stable sort: registry order kept within a (scale, set); every model gets the small sets first.
    return sorted(jobs, key=lambda job: (-job.scale, sets.index(job.dataset)))


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def render_markdown(command: str, rows: list[ZooRow], complete: bool, threads: int) -> str:
    """The results table, headed by the command that produced it."""
    lines = [
        f"`{command}`",
        "",
        "# FP32 accuracy of the pretrained zoo",
        "",
        "PSNR/SSIM on Y (" + Y_CONVENTION + "), SR clamped and rounded to uint8, `scale` pixels of border "
        "cropped, mean over images; LR images from the benchmark folders. `published`: shared/README.md "
        "(same LR images); `diff` = measured - published.",
        "",
        f"torch threads: {threads}; {platform.machine()} CPU."
        + ("" if complete else " **Incomplete: the run was interrupted; rows so far.**"),
        "",
        "| model | scale | set | images | PSNR-Y (dB) | SSIM-Y | published | diff | tolerance | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        tol = "-" if r.tolerance is None else f"{r.tolerance:.2f}"
        mark = "*" if r.reused else ""
        lines.append(
            f"| {r.arch} | x{r.scale} | {r.dataset} | {r.images} | {r.psnr:.4f} | {r.ssim:.4f} | "
            f"{_fmt(r.published)} | {_fmt(r.diff, signed=True)} | {tol} | {r.seconds:.1f}{mark} |"
        )
    if any(r.reused for r in rows):
        lines += [
            "",
            "\\* measured by an earlier run of this command (`--resume`: same checkpoint sha256 and "
            "image count); the time is that run's.",
        ]
    checkpoints = sorted({(r.checkpoint, r.checkpoint_sha256) for r in rows})
    lines += ["", "Checkpoints (sha256):", ""]
    lines += [f"- `{Path(name).name}`: `{sha}`" for name, sha in checkpoints]
    return "\n".join(lines) + "\n"


def write_results(out: Path, command: str, rows: list[ZooRow], complete: bool, threads: int) -> None:
    """Write ``<out>.json`` and ``<out>.md`` atomically."""
    from drq.artifacts import atomic_write_text

    payload = {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "complete": complete,
        "y_convention": Y_CONVENTION,
        "threads": threads,
        "results": [row.to_dict() for row in rows],
    }
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(payload, indent=1) + "\n")
    atomic_write_text(out.with_name(out.name + ".md"), render_markdown(command, rows, complete, threads))


def evaluate_job(job: ZooJob, loaded: Any) -> ZooRow:
    """Score one loaded model (`calib.models.LoadedModel`) on one set."""
    from calib.inference import torch_upscaler
    from drq.imaging.datasets import open_dataset
    from drq.imaging.evaluate import evaluate_dataset

    result = evaluate_dataset(torch_upscaler(loaded.model), open_dataset(job.folder, job.scale), job.scale)
    published, tolerance = PUBLISHED.get((job.arch, job.scale, job.dataset), (None, None))
    return ZooRow(
        arch=job.arch,
        scale=job.scale,
        dataset=job.dataset,
        images=result.images,
        psnr=result.psnr,
        ssim=result.ssim,
        seconds=result.seconds,
        checkpoint=str(job.checkpoint),
        checkpoint_sha256=loaded.checkpoint_sha256,
        published=published,
        tolerance=tolerance,
    )


def load_previous_rows(path: Path) -> dict[tuple[str, int, str, str], ZooRow]:
    """Rows of an earlier run's JSON, keyed by (arch, scale, dataset, checkpoint sha256); {} if absent.

    Raises:
        CalibError: The file exists but is not a zoo results file of this schema version.
    """
    if not path.is_file():
        return {}
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        if payload.get("schema_version") != SCHEMA_VERSION:
            raise CalibError(
                f"{path}: schema_version {payload.get('schema_version')!r}, expected {SCHEMA_VERSION}"
            )
        rows = [ZooRow.from_dict(item) for item in payload["results"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CalibError(f"{path}: not a drq zoo results file ({type(err).__name__}: {err})") from err
    return {(r.arch, r.scale, r.dataset, r.checkpoint_sha256): r for r in rows}


def _print_row(row: ZooRow) -> None:
    print(
        f"{row.arch:<11} x{row.scale} {row.dataset:<6} PSNR-Y {row.psnr:8.4f} dB  SSIM-Y {row.ssim:.4f}  "
        f"published {_fmt(row.published):>5} ({_fmt(row.diff, signed=True):>5})  {row.seconds:6.1f} s"
        + ("  (earlier run)" if row.reused else "")
    )
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    """Entry point of `drq zoo`; returns the exit code (user errors raise CalibError subclasses)."""
    args = _parser().parse_args(argv)
    if args.threads < 0:
        raise CalibError(f"--threads must be >= 0, got {args.threads}")
    from drq.artifacts import check_writable

    for suffix in (".json", ".md"):
        check_writable(args.out.with_name(args.out.name + suffix))
    jobs = plan_jobs(args.weights_dir, args.bench_dir, args.sets, args.archs, args.scales)
    import torch

    from calib.models import load_pretrained

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = int(torch.get_num_threads())
    command = "drq zoo " + " ".join(argv)
    from drq.artifacts import sha256_file
    from drq.imaging.datasets import open_dataset

    previous = load_previous_rows(args.out.with_name(args.out.name + ".json")) if args.resume else {}
    rows: list[ZooRow] = []
    loaded = None
    started = time.perf_counter()
    for job in jobs:
        row = (
            previous.get((job.arch, job.scale, job.dataset, sha256_file(job.checkpoint)))
            if previous
            else None
        )
        if row is None or row.images != len(open_dataset(job.folder, job.scale)):
            if loaded is None or (loaded.spec.name, loaded.scale) != (job.arch, job.scale):
                loaded = load_pretrained(job.arch, job.scale, job.checkpoint)
            row = evaluate_job(job, loaded)
        rows.append(row)
        _print_row(row)
        write_results(args.out, command, rows, complete=len(rows) == len(jobs), threads=threads)
    print(
        f"wrote {args.out}.json and {args.out}.md: {len(rows)} rows in {time.perf_counter() - started:.0f} s"
    )
    return 0
