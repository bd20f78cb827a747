"""`drq quantize`: calibrate a pretrained SR model on unlabeled LR crops and write a recipe.

Example::

    drq quantize --arch imdn --weights ../shared/sr_weights/imdn_x4.pth --scale 4 \\
        --calib ../shared/sr_calib/bsd200 -o imdn_x4_w4a4.json --method drq+saft --budget split
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from calib.errors import CalibError
from drq.artifacts import check_writable
from drq.cli_args import CommandParser, thread_count
from drq.recipe import (
    BREAKPOINT_INITS,
    DUAL_BUDGETS,
    METHODS,
    WEIGHT_MODES,
    ModelIdentity,
    Recipe,
    checkpoint_field,
)

if TYPE_CHECKING:
    from calib.calibrate import QuantizeConfig, QuantizeStats
    from calib.plan import PlanConfig

DEFAULT_CROP = 96
# BSD200's x4 LR images are 120 x 80: a 96-pixel crop does not fit, so x4 defaults to 80.
DEFAULT_CROP_BY_SCALE = {4: 80}


def default_crop(scale: int) -> int:
    """LR crop side used when --crop is not given: 96, or 80 at x4 (see DEFAULT_CROP_BY_SCALE)."""
    return DEFAULT_CROP_BY_SCALE.get(scale, DEFAULT_CROP)


def default_budget(method: str) -> str:
    """`uniform` for the baselines, `split` (deployable as two INT8 convs) for the dual-region methods,
    `fp8` for fp8."""
    if method == "fp8":
        return "fp8"
    return "split" if method.startswith("drq") else "uniform"


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq quantize",
        description="Post-training quantization of an SR network into a recipe "
        "(Wang et al., ICCV 2025: dual-region quantization + sensitivity-aware finetuning).",
    )
    p.add_argument("--arch", required=True, help="architecture name (calib.models.ARCHS)")
    p.add_argument("--weights", type=Path, required=True, help="pretrained checkpoint (.pth state_dict)")
    p.add_argument("--scale", type=int, required=True, help="upscaling factor")
    p.add_argument(
        "--calib", type=Path, required=True, help="folder of HR calibration images (LR made by bicubic)"
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="recipe JSON to write")
    p.add_argument("--method", choices=METHODS, default="drq+saft")
    p.add_argument("--w-bits", type=int, default=None, help="weight bits (default 4; 8 for fp8)")
    p.add_argument("--a-bits", type=int, default=None, help="activation bits (default 4; 8 for fp8)")
    p.add_argument(
        "--budget",
        choices=("uniform", *DUAL_BUDGETS, "mixed", "fp8"),
        default=None,
        help="activation code budget (default: uniform for baselines, split for drq methods, fp8 for fp8); "
        "mixed: per layer int8, split or fp16, least cost meeting --max-drop-db (calib.plan; W8A8 drq "
        "methods)",
    )
    _add_plan_options(p)
    p.add_argument("--weight-mode", choices=WEIGHT_MODES, default="per-channel")
    p.add_argument(
        "--bp-init",
        choices=BREAKPOINT_INITS,
        default="mse",
        help="mse (default): the split budget's breakpoint from an MSE search over the |x| histogram, the "
        "b-bit budget's code split and breakpoint from an MSE search over the signed histogram; "
        "percentile: the paper's 99th percentile (b-bit: the fixed split 2^(b-2)-1); paper budget: always "
        "the percentile",
    )
    p.add_argument(
        "--all-layers", action="store_true", help="quantize head, upsampler and tail at the target bits too"
    )
    p.add_argument("--images", type=int, default=100, help="calibration images (one crop each)")
    p.add_argument("--crop", type=int, default=None, help="LR crop side (default 96; 80 at x4)")
    p.add_argument("--epochs", type=int, default=10, help="finetuning epochs (drq+vft, drq+saft)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--ar-iters",
        type=int,
        default=200,
        help="learned weight rounding (drq+adaround*): reconstruction iterations per block",
    )
    p.add_argument(
        "--ar-batches",
        type=int,
        default=16,
        help="learned weight rounding: calibration batches it reconstructs on",
    )
    p.add_argument(
        "--gptq-batches",
        type=int,
        default=16,
        help="GPTQ weight rounding (drq+gptq*): calibration batches its layer Hessians are gathered on",
    )
    p.add_argument(
        "--gptq-target",
        choices=("fp", "quantized"),
        default="fp",
        help="GPTQ: match the FP layer on the FP input (default) or the FP weights on the quantized input",
    )
    p.add_argument(
        "--gptq-steps",
        choices=("search", "keep"),
        default="search",
        help="GPTQ: also try clipped weight steps per channel (default) or keep the MSE-searched ones",
    )
    p.add_argument("--threads", type=thread_count, default=0, help="torch CPU threads (0: library default)")
    p.add_argument(
        "--stats", type=Path, default=None, help="also write per-layer bits, losses and timings here (JSON)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    return p


def _add_plan_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("mixed budget (calib.plan)")
    g.add_argument("--max-drop-db", type=float, default=0.05, help="predicted PSNR drop to meet (dB)")
    g.add_argument(
        "--holdout", type=int, default=8, help="calibration images held out for the label-free proxy"
    )
    g.add_argument(
        "--proxy-ref-psnr",
        type=float,
        default=32.0,
        help="FP PSNR (dB) the proxy's output error is set against to predict the drop (Set5 x4 ~ 32)",
    )
    g.add_argument("--no-shift", action="store_true", help="no shifted int8 grids for inputs bounded below")
    g.add_argument(
        "--keep-empty-branch", action="store_true", help="never drop a split's empty outlier branch"
    )
    g.add_argument("--no-fp16-layers", action="store_true", help="only int8 and split forms")
    g.add_argument(
        "--from-split",
        type=Path,
        default=None,
        help="plan from this W8A8 split recipe instead of calibrating again (same --calib, --seed and "
        "--images as it was made with; the held-out images follow them)",
    )
    g.add_argument(
        "--alternatives",
        type=Path,
        default=None,
        help="also write PREFIX.split.json (the split recipe the plan started from) and PREFIX.int8.json "
        "(every layer int8) for ablations",
    )


def plan_config(args: argparse.Namespace) -> PlanConfig:
    """The mixed-plan options of the command line.

    Raises:
        CalibError: an invalid value, or the method / bits cannot give a mixed plan.
    """
    from calib.plan import PlanConfig

    if not args.method.startswith("drq") or args.a_bits != 8 or args.w_bits > 8:
        raise CalibError(
            f"--budget mixed: needs a drq method at --a-bits 8 (INT8 kernels), got {args.method} "
            f"W{args.w_bits}A{args.a_bits}"
        )
    if args.holdout < 1:
        raise CalibError(f"--holdout: must be >= 1, got {args.holdout}")
    return PlanConfig(
        max_drop_db=args.max_drop_db,
        ref_psnr_db=args.proxy_ref_psnr,
        shift=not args.no_shift,
        drop_empty_branch=not args.keep_empty_branch,
        allow_fp16=not args.no_fp16_layers,
    )


def _check_paths(args: argparse.Namespace) -> None:
    if not args.weights.is_file():
        raise CalibError(f"{args.weights}: no such checkpoint file")
    if not args.calib.is_dir():
        raise CalibError(f"{args.calib}: no such calibration folder")
    for out in (args.output, args.stats):
        if out is None:
            continue
        check_writable(out)
        resolved = out.resolve()
        if (
            resolved == args.weights.resolve()
            or resolved == args.calib.resolve()
            or args.calib.resolve() in resolved.parents
        ):
            raise CalibError(f"{out}: refusing to overwrite an input; choose another output path")
    if args.stats is not None and args.stats.resolve() == args.output.resolve():
        raise CalibError(f"{args.stats}: --stats must differ from -o")


def resolve_bit_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """`--w-bits` / `--a-bits` when not given: 8 for fp8, else the paper's 4 (a copy of `args`)."""
    default_bits = 8 if args.method == "fp8" else 4
    return argparse.Namespace(
        **{
            **vars(args),
            "w_bits": default_bits if args.w_bits is None else args.w_bits,
            "a_bits": default_bits if args.a_bits is None else args.a_bits,
        }
    )


def make_config(args: argparse.Namespace) -> QuantizeConfig:
    """The validated QuantizeConfig of the command line (before any model or image is loaded).

    Raises:
        CalibError: an invalid option or method / budget combination.
    """
    from calib.calibrate import QuantizeConfig

    args = resolve_bit_defaults(args)
    crop = args.crop if args.crop is not None else default_crop(args.scale)
    return QuantizeConfig(
        method=args.method,
        w_bits=args.w_bits,
        a_bits=args.a_bits,
        # mixed starts from a split calibration (calib.plan then chooses each layer's form)
        budget="split" if args.budget == "mixed" else args.budget or default_budget(args.method),
        weight_mode=args.weight_mode,
        breakpoint_init=args.bp_init,
        all_layers=args.all_layers,
        images=args.images,
        crop=crop,
        batch=args.batch,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        source=args.calib.name,
        ar_iters=args.ar_iters,
        ar_batches=args.ar_batches,
        gptq_batches=args.gptq_batches,
        gptq_target=args.gptq_target,
        gptq_steps=args.gptq_steps,
    )


def _split_start(args: argparse.Namespace) -> tuple[Any, Recipe]:
    """The simulated model and recipe of `--from-split` (checked against the command line).

    Raises:
        CalibError: the recipe is not a W8A8 split recipe of this arch, scale, calibration and seed.
    """
    from calib.simulate import load_simulated_model
    from drq.recipe import load_recipe

    split = load_recipe(args.from_split)
    info = split.calibration
    if split.budget != "split" or split.a_bits != 8:
        raise CalibError(f"{args.from_split}: --from-split needs a split recipe at 8 activation bits")
    if (split.model.arch, split.model.scale, info.images, info.seed, info.source) != (
        args.arch,
        args.scale,
        args.images,
        args.seed,
        args.calib.name,
    ):
        raise CalibError(
            f"{args.from_split}: made for {split.model.arch} x{split.model.scale} from {info.images} "
            f"{info.source} images, seed {info.seed}; pass the same --arch/--scale/--images/--calib/--seed"
        )
    return load_simulated_model(split, args.weights), split


def _plan_only(args: argparse.Namespace, progress: Any | None) -> tuple[Recipe, QuantizeStats, float]:
    """`--from-split`: the mixed plan of an existing split recipe (no calibration, no finetuning)."""
    import torch

    from calib.calibrate import QuantizeStats, make_batches
    from calib.plan import make_plan
    from calib.quantizers import quant_layers
    from drq.imaging.datasets import calib_crops

    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    model, split = _split_start(args)
    crop = args.crop if args.crop is not None else default_crop(args.scale)
    crops = calib_crops(args.calib, args.scale, crop, args.images + args.holdout, args.seed)
    batches = make_batches(crops[: args.images], args.batch)
    held = torch.stack([torch.as_tensor(c) for c in crops[args.images :]])
    layers = quant_layers(model)
    result = make_plan(model, {n: layers[n] for n in split.layers}, split, batches, held, plan_config(args))
    stats = QuantizeStats({n: 8 for n in split.layers}, (), {}, 0.0)
    stats.extra.update(plan=result.report, cost_table=result.cost_table)
    return result.recipe, stats, time.perf_counter() - started


def run(
    args: argparse.Namespace, config: QuantizeConfig, progress: Any | None
) -> tuple[Recipe, QuantizeStats, float]:
    """Load the model and data, quantize, return (recipe, stats, wall seconds). Torch imported here."""
    import torch

    if args.budget == "mixed" and args.from_split is not None:
        return _plan_only(args, progress)

    from calib.allocator import keep_freed_memory
    from calib.calibrate import make_batches, quantize
    from calib.models import load_pretrained
    from drq.imaging.datasets import calib_crops

    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    crop = config.crop
    started = time.perf_counter()
    loaded = load_pretrained(args.arch, args.scale, args.weights)
    mixed = args.budget == "mixed"
    # held-out crops come from images the quantizers never see (distinct draws of one generator)
    holdout = args.holdout if mixed else 0
    crops = calib_crops(args.calib, args.scale, crop, args.images + holdout, args.seed)
    batches = make_batches(crops[: args.images], args.batch)
    identity = ModelIdentity(
        arch=args.arch,
        scale=args.scale,
        checkpoint_sha256=loaded.checkpoint_sha256,
        checkpoint=str(args.weights),
    )
    recipe, stats = quantize(loaded.model, identity, batches, config, progress)
    if mixed:
        from calib.plan import make_plan
        from calib.quantizers import quant_layers

        layers = quant_layers(loaded.model)
        held = torch.stack([torch.as_tensor(c) for c in crops[args.images :]])
        result = make_plan(
            loaded.model, {n: layers[n] for n in recipe.layers}, recipe, batches, held, plan_config(args)
        )
        if args.alternatives is not None:
            from drq.recipe import save_recipe

            save_recipe(recipe, f"{args.alternatives}.split.json")
            save_recipe(result.all_int8, f"{args.alternatives}.int8.json")
        recipe = result.recipe
        stats.extra["plan"] = result.report
        stats.extra["cost_table"] = result.cost_table
    return recipe, stats, time.perf_counter() - started


def _peak_rss_mib() -> float | None:
    """Peak resident set size of this process in MiB (None where `resource` does not exist)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return round(kib / 1024.0, 1)


def _threads() -> int:
    import torch

    return int(torch.get_num_threads())


def main(argv: list[str]) -> int:
    """Entry point of `drq quantize`; returns the exit code (user errors raise CalibError)."""
    args = resolve_bit_defaults(_parser().parse_args(argv))
    _check_paths(args)
    if args.scale < 1 or args.threads < 0:
        raise CalibError(f"--scale must be >= 1 and --threads >= 0, got {args.scale} and {args.threads}")
    if args.budget == "mixed":
        plan_config(args)  # option errors before any work (and before the split config's own checks)
    elif args.from_split is not None or args.alternatives is not None:
        raise CalibError("--from-split / --alternatives: options of --budget mixed")
    config = make_config(args)
    from drq.artifacts import atomic_write_text
    from drq.imaging.progress import Progress
    from drq.recipe import save_recipe

    recipe, stats, wall = run(args, config, None if args.quiet else Progress)
    # Relative to the recipe's folder, so export / eval --recipe work from any working directory.
    recipe = replace(
        recipe, model=replace(recipe.model, checkpoint=checkpoint_field(args.weights, args.output))
    )
    save_recipe(recipe, args.output)
    if args.stats is not None:
        payload = {
            "command": "drq quantize " + " ".join(argv),
            "wall_s": wall,
            "peak_rss_mib": _peak_rss_mib(),
            "threads": _threads(),
            "recipe_sha256": recipe.sha256(),
            **stats.to_dict(),
        }
        if "plan" in stats.extra:
            payload["plan"] = stats.extra["plan"]
        atomic_write_text(args.stats, json.dumps(payload, indent=1) + "\n")
    if "cost_table" in stats.extra:
        report = stats.extra["plan"]["proxy"]["plan"]
        print(
            f"mixed plan: proxy PSNR {report['psnr_db']:.2f} dB on held-out crops, predicted drop "
            f"{report['predicted_drop_db']:.4f} dB (target {args.max_drop_db})"
        )
        print(stats.extra["cost_table"])
    bits = stats.layer_bits
    # The default policy keeps head, upsampler and tail at 8 bits: say how many layers are at the target.
    at_target = sum(1 for b in bits.values() if b == recipe.w_bits)
    print(
        f"wrote {args.output}: {recipe.method} W{recipe.w_bits}A{recipe.a_bits} {recipe.budget}, "
        f"{len(bits)} layers, {at_target} of them at {recipe.w_bits} bits, wall time {wall:.1f} s"
    )
    sys.stdout.flush()
    return 0
