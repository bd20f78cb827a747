"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution", CVPR-W 2017).

Subtract the DIV2K mean (on 0-255 pixels) -> 3 x 3 head -> residual blocks without batch norm
(conv, ReLU, conv, scaled by `res_scale`, plus input) -> 3 x 3 conv, plus the head's features -> an
upsampler of (conv to 4x / 9x channels, PixelShuffle) stages -> 3 x 3 conv to RGB -> add the mean.
Baseline: 16 blocks, 64 features, res_scale 1. Full: 32 blocks, 256 features, res_scale 0.1.

The paper's code works on 0-255 pixels (``rgb_range`` 255); this module keeps that convention for its
weights and scales inside forward, so callers pass [0, 1]. Module names follow the paper's code
(``head.0``, ``body.<i>.body.0``, ``tail.0.<j>``, ``tail.1``, ``sub_mean``/``add_mean`` with
``weight``/``bias``), so its checkpoints load without remapping.
"""

from __future__ import annotations

import torch
from torch import nn

from calib.models.common import DIV2K_RGB_MEAN, MeanShift, check_scale, conv3x3, shuffle_steps

EDSR_SCALES = (2, 3, 4)


class ResBlock(nn.Module):
    """``x + res_scale * conv(relu(conv(x)))``, no batch norm."""

    def __init__(self, channels: int, res_scale: float) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(channels, channels), nn.ReLU(), conv3x3(channels, channels))
        self.res_scale = float(res_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.body(x)
        if self.res_scale != 1.0:
            res = res * self.res_scale
        return res + x


def shuffle_upsampler(channels: int, scale: int) -> nn.Sequential:
    """EDSR/RCAN-style upsampler: (conv to 4x channels, PixelShuffle 2) per factor 2, or one x3 stage."""
    layers: list[nn.Module] = []
    for step in shuffle_steps(scale):
        layers += [conv3x3(channels, channels * step * step), nn.PixelShuffle(step)]
    return nn.Sequential(*layers)


class EDSR(nn.Module):
    """EDSR for one scale; input and output in [0, 1] (0-255 inside, as in the paper's code).

    Args:
        scale: Upscaling factor (2, 3 or 4).
        blocks: Residual blocks (16 baseline, 32 full).
        channels: Feature channels (64 baseline, 256 full).
        res_scale: Residual scaling (1 baseline, 0.1 full).
        input_range: Pixel range the weights expect (255 in the paper's code).
    """

    def __init__(
        self,
        scale: int,
        blocks: int = 16,
        channels: int = 64,
        res_scale: float = 1.0,
        input_range: float = 255.0,
    ) -> None:
        super().__init__()
        check_scale("edsr", scale, EDSR_SCALES)
        self.scale = scale
        self.input_range = float(input_range)
        self.sub_mean = MeanShift(DIV2K_RGB_MEAN, -1.0, self.input_range)
        self.add_mean = MeanShift(DIV2K_RGB_MEAN, 1.0, self.input_range)
        self.head = nn.Sequential(conv3x3(3, channels))
        self.body = nn.Sequential(
            *(ResBlock(channels, res_scale) for _ in range(blocks)), conv3x3(channels, channels)
        )
        self.tail = nn.Sequential(shuffle_upsampler(channels, scale), conv3x3(channels, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.head(self.sub_mean(x * self.input_range))
        out = self.tail(self.body(fea) + fea)
        return self.add_mean(out) / self.input_range


def edsr_baseline(scale: int) -> EDSR:
    """EDSR baseline: 16 blocks, 64 features, res_scale 1."""
    return EDSR(scale, blocks=16, channels=64, res_scale=1.0)


def edsr_full(scale: int) -> EDSR:
    """EDSR (full): 32 blocks, 256 features, res_scale 0.1."""
    return EDSR(scale, blocks=32, channels=256, res_scale=0.1)
