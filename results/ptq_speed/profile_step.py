"""Where a SAFT step's time goes: torch.profiler over IMDN x4 W4A4 split steps (8 crops of 80 px, batch 2).

usage (repository root, venv active):
  G=weight_scale|act_bounds|breakpoint T=2 python results/ptq_speed/profile_step.py
Prints the trained group's seconds per step (after a warm-up pass), the FP pass's seconds per batch, and
the profiler's table of three steps (self CPU time per op: convolutions, the fused kernels, the rest).
"""

import os
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

import calib.allocator as alloc
from calib import finetune as ft
from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.models import load_pretrained
from calib.quantizers import quant_layers
from drq.imaging.datasets import calib_crops
from drq.recipe import ModelIdentity

SHARED = Path(__file__).resolve().parents[3] / "shared"  # ../shared beside the repository


def main() -> None:
    torch.set_num_threads(int(os.environ.get("T", 2)))
    alloc.keep_freed_memory()  # as drq quantize does
    loaded = load_pretrained("imdn", 4, SHARED / "sr_weights" / "imdn_x4.pth")
    batches = make_batches(calib_crops(SHARED / "sr_calib" / "bsd200", 4, 80, 8, 0), 2)
    config = QuantizeConfig(method="drq", budget="split", w_bits=4, a_bits=4, images=8, crop=80)
    ident = ModelIdentity(arch="imdn", scale=4, checkpoint="x", checkpoint_sha256="0" * 64)
    _, stats = quantize(loaded.model, ident, batches, config)
    weights = ft.saft_weights(stats.extra["mean_std"])
    trainer, _ = ft._start(loaded.model, quant_layers(loaded.model), weights, ft.FinetuneConfig())
    loaded.model.eval()
    group = os.environ.get("G", "act_bounds")
    active = ft._activate(trainer, group)
    for batch in batches:  # warm-up (and the kernels' first compilation)
        ft._step(trainer, batch, active)
    started = time.perf_counter()
    for batch in batches:
        ft._step(trainer, batch, active)
    print(group, "s/step", (time.perf_counter() - started) / len(batches))
    started = time.perf_counter()
    for batch in batches:
        ft._fp_targets(trainer, batch)
    print("FP pass s/batch", (time.perf_counter() - started) / len(batches))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch in batches[:3]:
            ft._step(trainer, batch, active)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=35))


if __name__ == "__main__":
    main()
