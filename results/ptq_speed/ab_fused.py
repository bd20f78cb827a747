"""Same-process A/B of SAFT steps on IMDN x4: the torch reference (DRQ_FUSED_KERNELS=0) against the fused
numba kernels (1), alternating by pass over the same batches, so load on a shared machine hits both alike.

usage (repository root, venv active):
  T=1 N=4 R=3 [BUDGET=split|b-bit] python results/ptq_speed/ab_fused.py
Prints seconds per step (wall and CPU, min and median over R passes) per trained group.
"""

import os
import time

import numpy as np
import torch

import calib.allocator as alloc
from calib import finetune as ft
from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.models import load_pretrained
from calib.quantizers import quant_layers
from drq.imaging.datasets import calib_crops
from drq.recipe import ModelIdentity

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared")


def main() -> None:
    torch.set_num_threads(int(os.environ.get("T", 1)))
    alloc.keep_freed_memory()  # as drq quantize does
    n, reps, budget = (
        int(os.environ.get("N", 4)),
        int(os.environ.get("R", 3)),
        os.environ.get("BUDGET", "split"),
    )
    loaded = load_pretrained("imdn", 4, os.path.join(SHARED, "sr_weights", "imdn_x4.pth"))
    batches = make_batches(calib_crops(os.path.join(SHARED, "sr_calib", "bsd200"), 4, 80, n, 0), 2)
    cfg = QuantizeConfig(method="drq", budget=budget, w_bits=4, a_bits=4, images=n, crop=80)
    ident = ModelIdentity(arch="imdn", scale=4, checkpoint="x", checkpoint_sha256="0" * 64)
    _, stats = quantize(loaded.model, ident, batches, cfg)
    layers = quant_layers(loaded.model)
    trainer, _ = ft._start(
        loaded.model, layers, ft.saft_weights(stats.extra["mean_std"]), ft.FinetuneConfig()
    )
    loaded.model.eval()
    print(f"IMDN x4 {budget} W4A4, {n} crops of 80 px, batch 2, {torch.get_num_threads()} thread(s)")
    for group in ft.GROUPS:
        active = ft._activate(trainer, group)
        times: dict[str, tuple[list[float], list[float]]] = {m: ([], []) for m in ("0", "1")}
        for rep in range(reps + 1):  # the first pass warms up (and compiles the kernels)
            for mode, (wall, cpu) in times.items():
                os.environ["DRQ_FUSED_KERNELS"] = mode
                t, c = time.perf_counter(), time.process_time()
                for batch in batches:
                    ft._step(trainer, batch, active)
                if rep:
                    wall.append((time.perf_counter() - t) / len(batches))
                    cpu.append((time.process_time() - c) / len(batches))
        for mode, (wall, cpu) in times.items():
            name = "fused    " if mode == "1" else "reference"
            print(
                f"{group:12s} {name} s/step wall min {min(wall):.3f} median {np.median(wall):.3f}"
                f"  cpu min {min(cpu):.3f} median {np.median(cpu):.3f}"
            )


if __name__ == "__main__":
    main()
