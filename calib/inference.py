"""Adapt a torch SR model to the torch-free evaluation loop's `upscale(np.ndarray) -> np.ndarray`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def torch_upscaler(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap `model` ([0,1] NCHW float32 in and out) as a NumPy function run under inference mode."""
    model.eval()

    def upscale(lr: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = model(torch.from_numpy(np.ascontiguousarray(lr, dtype=np.float32)))
        return out.float().numpy()

    return upscale
