"""What the experiments here share: the data folder and the benchmark scores of a fake-quantized model."""

from pathlib import Path

from torch import nn

from calib.inference import torch_upscaler
from drq.imaging.datasets import open_dataset
from drq.imaging.evaluate import evaluate_dataset

SHARED = Path(__file__).resolve().parents[4] / "shared"  # ../shared beside the repository
SETS = ("Set5", "Set14", "B100")


def scores(model: nn.Module) -> str:
    """PSNR-Y of `model` (x4) on Set5 / Set14 / B100, as "a / b / c"."""
    upscale = torch_upscaler(model)
    psnr = [evaluate_dataset(upscale, open_dataset(SHARED / "sr_bench" / s / "x4", 4), 4).psnr for s in SETS]
    return " / ".join(f"{p:.4f}" for p in psnr)
