"""Experiment: `drq+gptq+saft` with another SAFT learning rate (the paper's is 1e-3).

usage (repository root, venv active): python results/ptq_w4a4/experiments/gptq_then_saft_lr.py ARCH BUDGET LR
Runs drq+gptq at W4A4 on 100 bsd200 crops (GPTQ on the first 32, as the paper-schedule rows), prints
its PSNR-Y Set5 / Set14 / B100, then SAFT's paper schedule (10 epochs, every group) at learning rate LR,
its per-epoch L_sen and the scores again. Two threads.
"""

import copy
import sys

import torch
from common import SHARED, scores  # this folder (the script's own, first on sys.path)

from calib import finetune as ft
from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.models import load_pretrained
from calib.quantizers import quant_layers
from drq.imaging.datasets import calib_crops
from drq.recipe import ModelIdentity


def main() -> None:
    torch.set_num_threads(2)
    arch, budget, lr = sys.argv[1], sys.argv[2], float(sys.argv[3])
    loaded = load_pretrained(arch, 4, SHARED / "sr_weights" / f"{arch}_x4.pth")
    model = copy.deepcopy(loaded.model)
    batches = make_batches(calib_crops(SHARED / "sr_calib" / "bsd200", 4, 80, 100, 0), 2)
    config = QuantizeConfig(method="drq+gptq", w_bits=4, a_bits=4, budget=budget, images=100, crop=80, seed=0)
    _, stats = quantize(model, ModelIdentity(arch, 4, loaded.checkpoint_sha256), batches, config)
    print(arch, budget, "drq+gptq:", scores(model), flush=True)
    weights = ft.saft_weights(stats.extra["mean_std"])
    run = ft.finetune(model, quant_layers(model), batches, weights, ft.FinetuneConfig(epochs=10, lr=lr))
    print("L_sen per epoch:", ", ".join(f"{e.group} {e.l_sen:.4f}" for e in run.epochs))
    print(arch, budget, f"then SAFT at lr {lr:g}:", scores(model), flush=True)


if __name__ == "__main__":
    main()
