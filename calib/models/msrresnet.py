"""MSRResNet: SRResNet (Ledig et al., CVPR 2017) without batch norm, as modified by Wang et al.
(ESRGAN, ECCV-W 2018) and shipped by BasicSR.

3 x 3 head + LeakyReLU(0.1) -> 16 residual blocks (conv, ReLU, conv, plus input; no BN) -> upsampling
by (conv to s^2 x channels, PixelShuffle, LeakyReLU(0.1)), twice x2 for x4 -> 3 x 3 conv + LeakyReLU
-> 3 x 3 conv to RGB, plus a bilinear upscale of the input. Input and output in [0, 1]. Module names
follow BasicSR (``conv_first``, ``body.<i>.conv1``, ``upconv1``, ``conv_hr``, ``conv_last``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from calib.models.common import check_scale, conv3x3

MSRRESNET_SCALES = (2, 3, 4)
MSRRESNET_SLOPE = 0.1


class ResidualBlockNoBN(nn.Module):
    """``x + conv2(relu(conv1(x)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(channels, channels)
        self.conv2 = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x))) + x


class MSRResNet(nn.Module):
    """MSRResNet for one scale; input and output in [0, 1].

    Args:
        scale: Upscaling factor (2, 3 or 4).
        channels: Feature channels (64).
        blocks: Residual blocks (16).
    """

    def __init__(self, scale: int, channels: int = 64, blocks: int = 16) -> None:
        super().__init__()
        check_scale("msrresnet", scale, MSRRESNET_SCALES)
        self.scale = scale
        self.conv_first = conv3x3(3, channels)
        self.body = nn.Sequential(*(ResidualBlockNoBN(channels) for _ in range(blocks)))
        first = 2 if scale == 4 else scale
        self.upconv1 = conv3x3(channels, channels * first * first)
        self.shuffle1 = nn.PixelShuffle(first)
        if scale == 4:
            self.upconv2 = conv3x3(channels, channels * 4)
            self.shuffle2 = nn.PixelShuffle(2)
        self.conv_hr = conv3x3(channels, channels)
        self.conv_last = conv3x3(channels, 3)
        self.act = nn.LeakyReLU(MSRRESNET_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(self.act(self.conv_first(x)))
        out = self.act(self.shuffle1(self.upconv1(out)))
        if self.scale == 4:
            out = self.act(self.shuffle2(self.upconv2(out)))
        out = self.conv_last(self.act(self.conv_hr(out)))
        return out + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
