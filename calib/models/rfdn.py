"""RFDN (Liu et al., "Residual Feature Distillation Network for Lightweight Image Super-Resolution",
ECCV-W 2020, AIM 2020 efficient SR winner) and RLFN (Kong et al., "Residual Local Feature Network for
Efficient Super-Resolution", NTIRE 2022 efficient SR winner, challenge version).

Both share IMDN's frame (3 x 3 head, blocks, 3 x 3 conv plus the head's features, conv + PixelShuffle)
and gate each block's output with enhanced spatial attention (ESA): 1 x 1 reduction, a strided 3 x 3
conv, 7 x 7 / stride 3 max pooling, 3 x 3 conv(s), bilinear resize back to the block's size, plus a
1 x 1 of the reduced features, 1 x 1 expansion, sigmoid, multiply.

RFDN (50 channels, 4 blocks): a residual feature distillation block keeps a 1 x 1 "distilled" branch
(25 channels) at each of three steps while a 3 x 3 conv with a shallow residual refines the rest; the
four distilled parts are fused by 1 x 1 and gated by ESA (with its extra ``conv_max``/``conv3_``
convs). All block outputs are fused by 1 x 1 + LeakyReLU before the long skip. LeakyReLU slope 0.05.

RLFN challenge version (46 channels, 48 mid, 4 blocks, ESA with 16 channels and a single 3 x 3 after
pooling): three 3 x 3 convs with LeakyReLU(0.05), the block input added, a 1 x 1 conv, ESA; the last
block feeds the long skip directly.

Both official checkpoints expect pixels in 0-255; the models scale by `input_range` inside forward so
callers pass [0, 1]. Module names follow the official code, so no remapping is needed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from calib.models.common import chain_outputs, check_scale, conv1x1, conv3x3, pixel_shuffle_upsampler

RFDN_SCALES = (2, 3, 4)
SLOPE = 0.05


class ESA(nn.Module):
    """Enhanced spatial attention; `full` adds RFDN's ``conv_max`` and ``conv3_`` (RLFN drops them)."""

    def __init__(self, channels: int, reduced: int, full: bool) -> None:
        super().__init__()
        self.full = full
        self.conv1 = conv1x1(channels, reduced)
        self.conv_f = conv1x1(reduced, reduced)
        if full:
            self.conv_max = conv3x3(reduced, reduced)
        self.conv2 = nn.Conv2d(reduced, reduced, 3, stride=2, padding=0)
        self.conv3 = conv3x3(reduced, reduced)
        if full:
            self.conv3_ = conv3x3(reduced, reduced)
        self.conv4 = conv1x1(reduced, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c1_ = self.conv1(x)
        pooled = F.max_pool2d(self.conv2(c1_), kernel_size=7, stride=3)
        if self.full:
            c3 = self.conv3_(F.relu(self.conv3(F.relu(self.conv_max(pooled)))))
        else:
            c3 = self.conv3(pooled)
        c3 = F.interpolate(c3, size=(x.shape[2], x.shape[3]), mode="bilinear", align_corners=False)
        return x * torch.sigmoid(self.conv4(c3 + self.conv_f(c1_)))


class RFDB(nn.Module):
    """Residual feature distillation block."""

    def __init__(self, channels: int = 50) -> None:
        super().__init__()
        distilled = channels // 2
        self.c1_d = conv1x1(channels, distilled)
        self.c1_r = conv3x3(channels, channels)
        self.c2_d = conv1x1(channels, distilled)
        self.c2_r = conv3x3(channels, channels)
        self.c3_d = conv1x1(channels, distilled)
        self.c3_r = conv3x3(channels, channels)
        self.c4 = conv3x3(channels, distilled)
        self.act = nn.LeakyReLU(SLOPE)
        self.c5 = conv1x1(distilled * 4, channels)
        self.esa = ESA(channels, channels // 4, full=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1 = self.act(self.c1_d(x))
        r1 = self.act(self.c1_r(x) + x)
        d2 = self.act(self.c2_d(r1))
        r2 = self.act(self.c2_r(r1) + r1)
        d3 = self.act(self.c3_d(r2))
        r3 = self.act(self.c3_r(r2) + r2)
        d4 = self.act(self.c4(r3))
        return self.esa(self.c5(torch.cat([d1, d2, d3, d4], dim=1)))


class RFDN(nn.Module):
    """RFDN for one scale; input and output in [0, 1] (scaled to `input_range` inside).

    Args:
        scale: Upscaling factor.
        channels: Feature channels (50).
        blocks: Number of RFDBs (4).
        input_range: Pixel range the weights were trained on (255 for the official checkpoint).
    """

    def __init__(self, scale: int, channels: int = 50, blocks: int = 4, input_range: float = 255.0) -> None:
        super().__init__()
        check_scale("rfdn", scale, RFDN_SCALES)
        self.scale = scale
        self.input_range = float(input_range)
        self.blocks = blocks
        self.fea_conv = conv3x3(3, channels)
        for i in range(1, blocks + 1):  # B1..Bn: the official attribute names
            self.add_module(f"B{i}", RFDB(channels))
        self.c = nn.Sequential(conv1x1(channels * blocks, channels), nn.LeakyReLU(SLOPE))
        self.LR_conv = conv3x3(channels, channels)
        self.upsampler = pixel_shuffle_upsampler(channels, 3, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x * self.input_range)
        outs = chain_outputs([getattr(self, f"B{i}") for i in range(1, self.blocks + 1)], fea)
        lr = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(lr) / self.input_range


class RLFB(nn.Module):
    """Residual local feature block (challenge version)."""

    def __init__(self, channels: int = 46, mid: int = 48, esa_channels: int = 16) -> None:
        super().__init__()
        self.c1_r = conv3x3(channels, mid)
        self.c2_r = conv3x3(mid, mid)
        self.c3_r = conv3x3(mid, channels)
        self.c5 = conv1x1(channels, channels)
        self.esa = ESA(channels, esa_channels, full=False)
        self.act = nn.LeakyReLU(SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.c3_r(self.act(self.c2_r(self.act(self.c1_r(x))))))
        return self.esa(self.c5(out + x))


class RLFN(nn.Module):
    """RLFN (NTIRE 2022 challenge version) for one scale; input and output in [0, 1].

    Args:
        scale: Upscaling factor.
        channels: Feature channels (46).
        mid: Channels inside each block (48).
        blocks: Number of RLFBs (4).
        input_range: Pixel range the weights were trained on (255 for the official checkpoint).
    """

    def __init__(
        self, scale: int, channels: int = 46, mid: int = 48, blocks: int = 4, input_range: float = 255.0
    ) -> None:
        super().__init__()
        check_scale("rlfn", scale, RFDN_SCALES)
        self.scale = scale
        self.input_range = float(input_range)
        self.blocks = blocks
        self.fea_conv = conv3x3(3, channels)
        for i in range(1, blocks + 1):
            self.add_module(f"B{i}", RLFB(channels, mid))
        self.LR_conv = conv3x3(channels, channels)
        self.upsampler = pixel_shuffle_upsampler(channels, 3, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x * self.input_range)
        out = chain_outputs([getattr(self, f"B{i}") for i in range(1, self.blocks + 1)], fea)[-1]
        return self.upsampler(self.LR_conv(out) + fea) / self.input_range
