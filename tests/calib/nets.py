"""Tiny SR-shaped networks for the PTQ tests (a few hundred parameters, 16 px inputs)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyShuffle(nn.Module):
    """head -> residual body -> conv + PixelShuffle(2) -> HR tail conv; one branch never executed."""

    def __init__(self, nf: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, nf, 3, padding=1)
        self.body = nn.Sequential(
            nn.Conv2d(nf, nf, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(nf, nf, 3, padding=1)
        )
        self.unused = nn.Conv2d(nf, nf, 1)
        self.fuse = nn.Conv2d(nf, nf, 1)
        self.up = nn.Conv2d(nf, nf * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.tail = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        f = self.fuse(f + self.body(f))
        return self.tail(F.leaky_relu(self.shuffle(self.up(f)), 0.1))


class TinyInterp(nn.Module):
    """PAN-like: the body's last conv reaches F.interpolate through an add; an attention branch
    interpolates back to LR size (must not count as upsampling)."""

    def __init__(self, nf: int = 8) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, nf, 3, padding=1)
        self.down = nn.Conv2d(nf, nf, 3, stride=2, padding=1)
        self.att = nn.Conv2d(nf, nf, 1)
        self.trunk = nn.Conv2d(nf, nf, 3, padding=1)
        self.hr = nn.Conv2d(nf, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.first(x)
        a = F.interpolate(self.down(f), size=f.shape[-2:], mode="bilinear", align_corners=False)
        f = f * torch.sigmoid(self.att(a))
        f = f + self.trunk(f)
        return self.hr(F.interpolate(f, scale_factor=2, mode="nearest"))


class TinyTranspose(nn.Module):
    def __init__(self, nf: int = 4) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, nf, 3, padding=1)
        self.mid = nn.Conv2d(nf, nf, 3, padding=1)
        self.up = nn.ConvTranspose2d(nf, 3, 4, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.mid(self.head(x))))


def tiny_batches(count: int = 4, batch: int = 2, size: int = 16, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.rand(batch, 3, size, size, generator=gen) for _ in range(count)]


def assert_recipe_reproduces(net: nn.Module, quantized: nn.Module, recipe) -> None:  # noqa: ANN001
    """`net` with `recipe` applied (after a JSON round trip) computes exactly what `quantized` does, and
    every layer carries the recipe's fixed weight codes."""
    import copy

    import numpy as np

    from calib.quantizers import apply_recipe, quant_layers
    from drq.recipe import decode_weight_codes, recipe_from_dict

    again = recipe_from_dict(recipe.to_dict())
    assert again == recipe
    fresh = copy.deepcopy(net)
    apply_recipe(fresh, again)
    x = torch.rand(1, 3, 12, 20)
    with torch.no_grad():
        assert torch.equal(fresh(x), quantized(x))
    for name, layer in quant_layers(fresh).items():
        assert np.array_equal(
            layer.w_quant.codes.numpy().reshape(-1), decode_weight_codes(recipe.layers[name].weight)
        )
        assert layer.w_quant.codes.numel() == layer.layer.weight.numel()
