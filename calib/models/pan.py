"""PAN (Zhao et al., "Efficient Image Super-Resolution Using Pixel Attention", ECCV-W 2020).

Head 3 x 3 conv (nf = 40) -> 16 SC-PA blocks -> 3 x 3 trunk conv, added to the head's features ->
upsampling by nearest-neighbour interpolation followed by U-PA stages (conv, pixel attention,
LeakyReLU, conv, LeakyReLU) at unf = 24 channels (one x2/x3 stage, or two x2 stages for x4) ->
3 x 3 conv to RGB, plus a bilinear upscale of the input (global residual).

An SC-PA block splits into two 1 x 1-reduced branches (nf / 2 each): a plain 3 x 3 conv, and a
pixel-attention conv (PAConv: ``k4(k3(x) * sigmoid(k2(x)))``); both use LeakyReLU(0.2); a 1 x 1 conv
fuses them and the block input is added. Pixel attention (PA): ``x * sigmoid(conv1x1(x))``. Module
names follow the official checkpoints.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from calib.models.common import check_scale, conv1x1, conv3x3

PAN_SCALES = (2, 3, 4)
PAN_SLOPE = 0.2


class PixelAttention(nn.Module):
    """PA: multiply by a per-pixel, per-channel sigmoid gate from a 1 x 1 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = conv1x1(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class PAConv(nn.Module):
    """Pixel-attention convolution: ``k4(k3(x) * sigmoid(k2(x)))``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.k2 = conv1x1(channels, channels)
        self.k3 = conv3x3(channels, channels, bias=False)
        self.k4 = conv3x3(channels, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * torch.sigmoid(self.k2(x)))


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.conv1_a = conv1x1(channels, half, bias=False)
        self.conv1_b = conv1x1(channels, half, bias=False)
        self.k1 = nn.Sequential(conv3x3(half, half, bias=False))
        self.PAConv = PAConv(half)
        self.conv3 = conv1x1(half * 2, channels, bias=False)
        self.act = nn.LeakyReLU(PAN_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.k1(self.act(self.conv1_a(x))))
        b = self.act(self.PAConv(self.act(self.conv1_b(x))))
        return self.conv3(torch.cat([a, b], dim=1)) + x


class PAN(nn.Module):
    """PAN for one scale; input and output in [0, 1].

    Args:
        scale: Upscaling factor (2, 3 or 4).
        nf: Feature channels at LR (40).
        unf: Feature channels of the upsampling stages (24).
        blocks: Number of SC-PA blocks (16).
    """

    def __init__(self, scale: int, nf: int = 40, unf: int = 24, blocks: int = 16) -> None:
        super().__init__()
        check_scale("pan", scale, PAN_SCALES)
        self.scale = scale
        self.conv_first = conv3x3(3, nf)
        self.SCPA_trunk = nn.Sequential(*(SCPA(nf) for _ in range(blocks)))
        self.trunk_conv = conv3x3(nf, nf)
        self.upconv1 = conv3x3(nf, unf)
        self.att1 = PixelAttention(unf)
        self.HRconv1 = conv3x3(unf, unf)
        if scale == 4:
            self.upconv2 = conv3x3(unf, unf)
            self.att2 = PixelAttention(unf)
            self.HRconv2 = conv3x3(unf, unf)
        self.conv_last = conv3x3(unf, 3)
        self.act = nn.LeakyReLU(PAN_SLOPE)

    def _stage(
        self, x: torch.Tensor, factor: int, up: nn.Module, att: nn.Module, hr: nn.Module
    ) -> torch.Tensor:
        x = up(F.interpolate(x, scale_factor=factor, mode="nearest"))
        x = self.act(att(x))
        return self.act(hr(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.conv_first(x)
        fea = fea + self.trunk_conv(self.SCPA_trunk(fea))
        if self.scale == 4:
            fea = self._stage(fea, 2, self.upconv1, self.att1, self.HRconv1)
            fea = self._stage(fea, 2, self.upconv2, self.att2, self.HRconv2)
        else:
            fea = self._stage(fea, self.scale, self.upconv1, self.att1, self.HRconv1)
        base = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        return self.conv_last(fea) + base
