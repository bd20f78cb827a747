"""Experiment: `drq+gptq`, then SAFT whose epochs alternate activation bounds and breakpoints only (the
weight scales, which GPTQ already searched, never train).

usage (repository root, venv active):
  python results/ptq_w4a4/experiments/gptq_then_saft_without_weight_scales.py ARCH BUDGET CROPS [THREADS]
CROPS 100: the paper schedule (10 epochs); 16: the reduced one (2 epochs). Prints PSNR-Y Set5 / Set14 /
B100 after GPTQ, the per-epoch L_sen, and the scores after SAFT.
"""

import copy
import sys

import torch

sys.path.insert(0, "results/ptq_w4a4/experiments")
from common import SHARED, scores

from calib import finetune as ft
from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.models import load_pretrained
from calib.quantizers import quant_layers
from drq.imaging.datasets import calib_crops
from drq.recipe import ModelIdentity

torch.set_num_threads(int(sys.argv[4]) if len(sys.argv) > 4 else 1)
arch, budget, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
epochs = 2 if n == 16 else 10
loaded = load_pretrained(arch, 4, SHARED / "sr_weights" / f"{arch}_x4.pth")
model = copy.deepcopy(loaded.model)
batches = make_batches(calib_crops(SHARED / "sr_calib" / "bsd200", 4, 80, n, 0), 2)
common = {"w_bits": 4, "a_bits": 4, "budget": budget, "images": n, "crop": 80, "seed": 0}
_, stats = quantize(
    model,
    ModelIdentity(arch, 4, loaded.checkpoint_sha256),
    batches,
    QuantizeConfig(method="drq+gptq", **common),
)
print(arch, budget, n, "gptq only", scores(model), flush=True)
CYCLE = ("act_bounds", "breakpoint")


def _epoch(trainer, epoch, batches, bar):
    group = CYCLE[epoch % len(CYCLE)]
    active = ft._activate(trainer, group)
    lr = trainer.config.lr * trainer.config.lr_decay**epoch
    sums = [0.0, 0.0, 0.0]
    for batch in batches:
        r = ft._step(trainer, batch, active)
        sums = [a + b for a, b in zip(sums, r, strict=True)]
    trainer.scheduler.step()
    k = len(batches)
    return ft.EpochLog(epoch + 1, group, lr, sums[0] / k, sums[1] / k, sums[2] / k)


ft._epoch = _epoch
layers = quant_layers(model)
st = ft.finetune(
    model, layers, batches, ft.saft_weights(stats.extra["mean_std"]), ft.FinetuneConfig(epochs=epochs)
)
print([(e.epoch, e.group, round(e.l_sen, 4)) for e in st.epochs])
print(arch, budget, n, "gptq + saft without weight scales", scores(model), flush=True)
