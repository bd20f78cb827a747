"""Experiment (not a drq method): the b-bit format searched on a histogram in which each activation
value counts ||W[:, c]||^2 (its channel's weight norm in the layer it feeds, normalised to mean 1), a
diagonal output-error criterion, instead of 1 (the input MSE that `calib.bbit_format` minimises).

usage (repository root, venv active): python results/ptq_w4a4/experiments/weighted_histogram.py ARCH
Prints PSNR-Y Set5 / Set14 / B100 of `drq` W4A4 b-bit on 32 bsd200 crops (no finetuning), the
configuration of the grid's `drq` b-bit row, with the weighted search.
"""

import copy
import sys

import numpy as np
import torch
from common import SHARED, scores  # this folder (the script's own, first on sys.path)

from calib import bbit_format
from calib import calibrate as cal
from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.models import load_pretrained
from drq.imaging.datasets import calib_crops
from drq.recipe import ModelIdentity


def weighted_collect(hist, x: torch.Tensor, weight: torch.Tensor | None) -> None:
    """`AbsHistogram.collect` with a count of `weight` (broadcast over x) per value."""
    a = x.detach().float().abs()
    w = None if weight is None else weight.expand_as(a).flatten().double()
    a = a.flatten()
    peak = float(a.max()) if a.numel() else 0.0
    if hist.width == 0.0:
        if peak == 0.0:
            hist.counts[0] += a.numel() if w is None else float(w.sum())
            return
        hist.width = peak / hist.bins
    while peak > hist.width * hist.bins:
        hist.counts = np.concatenate([hist.counts.reshape(-1, 2).sum(axis=1), np.zeros(hist.bins // 2)])
        hist.width *= 2
    idx = torch.clamp((a / hist.width).floor().to(torch.int64), 0, hist.bins - 1)
    hist.counts += torch.bincount(idx, weights=w, minlength=hist.bins).double().numpy()


class WeightedSignedHistogram(bbit_format.SignedHistogram):
    def __init__(self, channel_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.channel_weight = channel_weight

    def collect(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        weighted_collect(self.pos, torch.clamp(x, min=0.0), self.channel_weight)
        weighted_collect(self.neg, torch.clamp(-x, min=0.0), self.channel_weight)


def channel_weight(layer) -> torch.Tensor | None:
    """||W[:, c]||^2 / its mean, shaped to broadcast over the layer's input (None: grouped conv)."""
    w = layer.layer.weight.detach().double()
    if layer.op != "conv2d" or layer.layer.groups != 1:
        return None
    norms = (w**2).sum(dim=(0, 2, 3))
    return (norms / norms.mean()).float().view(1, -1, 1, 1)


def main() -> None:
    torch.set_num_threads(1)
    arch = sys.argv[1]
    loaded = load_pretrained(arch, 4, SHARED / "sr_weights" / f"{arch}_x4.pth")
    model = copy.deepcopy(loaded.model)
    observe = cal._observe

    def weighted_observe(model, layers, batches, config, progress):  # _observe makes one per layer, in order
        order = iter(layers.values())
        cal.SignedHistogram = lambda: WeightedSignedHistogram(channel_weight(next(order)))
        try:
            return observe(model, layers, batches, config, progress)
        finally:
            cal.SignedHistogram = bbit_format.SignedHistogram

    cal._observe = weighted_observe
    crops = calib_crops(SHARED / "sr_calib" / "bsd200", 4, 80, 32, 0)
    config = QuantizeConfig(method="drq", w_bits=4, a_bits=4, budget="b-bit", images=32, crop=80, seed=0)
    quantize(model, ModelIdentity(arch, 4, loaded.checkpoint_sha256), make_batches(crops, 2), config)
    print(arch, "drq b-bit W4A4, weighted histogram:", scores(model))


if __name__ == "__main__":
    main()
