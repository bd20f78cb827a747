"""Experiment (not a drq method): SAFT first, then GPTQ codes for the finetuned quantizers, the reverse
of `drq+gptq+saft`'s order.

usage (repository root, venv active): python results/ptq_w4a4/experiments/saft_then_gptq.py ARCH BUDGET
Prints PSNR-Y Set5 / Set14 / B100 at W4A4 on 16 bsd200 crops (SAFT 2 epochs, GPTQ on the same crops),
the configuration of the grid's reduced `drq+gptq+saft` rows.
"""

import copy
import sys

import torch
from common import SHARED, scores  # this folder (the script's own, first on sys.path)

from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.gptq import gptq
from calib.models import load_pretrained
from calib.quantizers import quant_layers
from drq.imaging.datasets import calib_crops
from drq.recipe import ModelIdentity


def main() -> None:
    torch.set_num_threads(1)
    arch, budget = sys.argv[1], sys.argv[2]
    loaded = load_pretrained(arch, 4, SHARED / "sr_weights" / f"{arch}_x4.pth")
    model = copy.deepcopy(loaded.model)
    batches = make_batches(calib_crops(SHARED / "sr_calib" / "bsd200", 4, 80, 16, 0), 2)
    common = {"w_bits": 4, "a_bits": 4, "budget": budget, "images": 16, "crop": 80, "seed": 0}
    saft = QuantizeConfig(method="drq+saft", epochs=2, **common)
    quantize(model, ModelIdentity(arch, 4, loaded.checkpoint_sha256), batches, saft)
    gptq(model, quant_layers(model), batches, QuantizeConfig(method="drq+gptq", **common).gptq_config(), None)
    print(arch, budget, "SAFT then GPTQ:", scores(model))


if __name__ == "__main__":
    main()
