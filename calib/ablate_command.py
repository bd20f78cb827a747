"""`drq ablate`: where a low-bit model loses its PSNR, layer by layer, weights against activations.

Calibrates the model with `drq quantize`'s calibration (no finetuning; `--method drq` and the split
budget unless told otherwise) at W{w}A{a}, W{w}A8 and W8A{a}, and evaluates on one benchmark set:

* FP, the whole model at W{w}A{a}, W{w}A8 (weights alone) and W8A{a} (activations alone);
* for every quantized layer k (unless --whole-model-only), the FP model with only layer k's weights
  quantized, and with only its input quantized (the policy's bits: head, upsampler and tail at 8), as
  the PSNR drop from FP.

Example::

    drq ablate --arch imdn --weights ../shared/sr_weights/imdn_x4.pth --scale 4 \\
        --calib ../shared/sr_calib/bsd200 --data ../shared/sr_bench/Set5/x4 -o results/ptq_ablate/imdn_x4
"""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path
from typing import Any

from calib.errors import CalibError
from drq.cli_args import CommandParser


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="drq ablate", description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True)
    p.add_argument("--weights", type=Path, required=True)
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--calib", type=Path, required=True, help="folder of HR calibration images")
    p.add_argument("--data", type=Path, required=True, help="benchmark set (HR/ + LR/, or HR images)")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="output stem: writes STEM.json and STEM.md"
    )
    p.add_argument(
        "--method",
        default="drq",
        choices=("drq", "drq+gptq", "drq+adaround", "minmax", "mse", "percentile", "entropy"),
        help="calibration method (no finetuning); drq+gptq / drq+adaround also round the weights",
    )
    p.add_argument(
        "--whole-model-only",
        action="store_true",
        help="only the whole-model rows (FP, W{w}A{a}, W{w}A8, W8A{a}), not the single-layer ones",
    )
    p.add_argument("--budget", default=None, help="activation budget (default: split for drq, else uniform)")
    p.add_argument("--bp-init", default="mse", choices=("mse", "percentile"))
    p.add_argument("--w-bits", type=int, default=4)
    p.add_argument("--a-bits", type=int, default=4)
    p.add_argument("--images", type=int, default=20, help="calibration images (one crop each)")
    p.add_argument("--crop", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    return p


def _config(args: argparse.Namespace, w_bits: int, a_bits: int) -> Any:
    from calib.calibrate import QuantizeConfig
    from calib.quantize_command import default_budget, default_crop

    return QuantizeConfig(
        method=args.method,
        w_bits=w_bits,
        a_bits=a_bits,
        budget=args.budget or default_budget(args.method),
        breakpoint_init=args.bp_init,
        images=args.images,
        crop=args.crop or default_crop(args.scale),
        seed=args.seed,
        source=args.calib.name,
    )


def _psnr(model: Any, dataset: Any, scale: int) -> float:
    from calib.inference import torch_upscaler
    from drq.imaging.evaluate import evaluate_dataset

    return round(float(evaluate_dataset(torch_upscaler(model), dataset, scale).psnr), 4)


def _only(layers: dict[str, Any], name: str, part: str) -> list[tuple[Any, Any, Any]]:
    """Quantization on for layer `name`'s `part` ('weight' or 'act') only; returns what to restore."""
    saved = [(layer, layer.w_quant, layer.a_quant) for layer in layers.values()]
    for other, layer in layers.items():
        layer.quant_enabled = other == name
    target = layers[name]
    if part == "weight":
        target.a_quant = None
    else:
        target.w_quant = None
    return saved


def _restore(saved: list[tuple[Any, Any, Any]]) -> None:
    for layer, w_quant, a_quant in saved:
        layer.w_quant, layer.a_quant, layer.quant_enabled = w_quant, a_quant, True


def _layer_rows(
    model: Any, dataset: Any, scale: int, fp: float, bits: dict[str, Any]
) -> list[dict[str, Any]]:
    from calib.quantizers import quant_layers

    layers = quant_layers(model)
    rows = []
    for name in layers:
        drops = {}
        for part in ("weight", "act"):
            saved = _only(layers, name, part)
            try:
                drops[part] = round(_psnr(model, dataset, scale) - fp, 4)
            finally:
                _restore(saved)
        rows.append(
            {"layer": name, "w_bits": bits["weight_bits"][name], "weight_drop_db": drops["weight"],
             "a_bits": bits["layer_bits"][name], "act_drop_db": drops["act"]}
        )  # fmt: skip
    return rows


def _markdown(payload: dict[str, Any]) -> str:
    whole = payload["whole_model"]
    lines = [
        f"# drq ablate: {payload['arch']} x{payload['scale']} on {payload['data']}",
        "",
        f"Command: `{payload['command']}`",
        "",
        "| model | PSNR-Y (dB) | vs FP |",
        "|---|---|---|",
    ]
    for key, value in whole.items():
        lines.append(f"| {key} | {value:.3f} | {value - whole['FP']:+.3f} |")
    if not payload["layers"]:
        return "\n".join(lines + [""])
    lines += [
        "",
        "| layer | w bits | weights alone (dB) | a bits | input alone (dB) |",
        "|---|---|---|---|---|",
    ]
    for row in payload["layers"]:
        lines.append(
            f"| {row['layer']} | {row['w_bits']} | {row['weight_drop_db']:+.3f} | {row['a_bits']} | "
            f"{row['act_drop_db']:+.3f} |"
        )
    sums = payload["sums"]
    lines += [
        "",
        f"Sum of single-layer drops: weights {sums['weight']:+.3f} dB, inputs {sums['act']:+.3f} dB.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of `drq ablate` (user errors raise CalibError / DrqError subclasses)."""
    args = _parser().parse_args(argv)
    if not args.weights.is_file():
        raise CalibError(f"{args.weights}: no such checkpoint file")
    if not args.calib.is_dir():
        raise CalibError(f"{args.calib}: no such calibration folder")
    configs = {
        f"W{args.w_bits}A{args.a_bits}": _config(args, args.w_bits, args.a_bits),
        f"W{args.w_bits}A8": _config(args, args.w_bits, 8),
        f"W8A{args.a_bits}": _config(args, 8, args.a_bits),
    }
    import torch

    from calib.allocator import keep_freed_memory
    from calib.calibrate import make_batches, quantize
    from calib.models import load_pretrained
    from drq.artifacts import atomic_write_text
    from drq.imaging.datasets import calib_crops, open_dataset
    from drq.recipe import ModelIdentity

    if args.threads:
        torch.set_num_threads(args.threads)
    keep_freed_memory()
    dataset = open_dataset(args.data, args.scale)
    loaded = load_pretrained(args.arch, args.scale, args.weights)
    identity = ModelIdentity(args.arch, args.scale, loaded.checkpoint_sha256, checkpoint=str(args.weights))
    first = next(iter(configs.values()))
    batches = make_batches(
        calib_crops(args.calib, args.scale, first.crop, args.images, args.seed), first.batch
    )
    whole = {"FP": _psnr(loaded.model, dataset, args.scale)}
    models = {}
    for key, config in configs.items():
        model = copy.deepcopy(loaded.model)
        _, stats = quantize(model, identity, batches, config)
        whole[key] = _psnr(model, dataset, args.scale)
        models[key] = (model, stats)
    low_model, low_stats = models[f"W{args.w_bits}A{args.a_bits}"]
    rows = (
        []
        if args.whole_model_only
        else _layer_rows(low_model, dataset, args.scale, whole["FP"], low_stats.to_dict() | low_stats.extra)
    )
    payload = {
        "command": "drq ablate " + " ".join(argv),
        "arch": args.arch,
        "scale": args.scale,
        "data": dataset.name,
        "method": first.method,
        "budget": first.budget,
        "calibration_images": args.images,
        "whole_model": whole,
        "layers": rows,
        "sums": {
            "weight": round(sum(r["weight_drop_db"] for r in rows), 4),
            "act": round(sum(r["act_drop_db"] for r in rows), 4),
        },
    }
    stem = args.output
    stem.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stem.with_suffix(".json"), json.dumps(payload, indent=1) + "\n")
    atomic_write_text(stem.with_suffix(".md"), _markdown(payload))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.md')}")
    return 0
