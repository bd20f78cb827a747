"""CARN-M (Ahn et al., "Fast, Accurate, and Lightweight Super-Resolution with Cascading Residual
Network", ECCV 2018): the mobile variant, one network for x2, x3 and x4.

Subtract the DIV2K mean -> 3 x 3 entry conv (64) -> three cascading blocks, each followed by a 1 x 1
conv + ReLU over the concatenation of all earlier outputs (global cascading) -> the upsampler of the
requested scale -> 3 x 3 exit conv -> add the mean back. Inside a cascading block one efficient
residual block (group conv 3 x 3, ReLU, group conv 3 x 3, ReLU, 1 x 1, add input, ReLU; 4 groups) is
applied three times with shared weights, with the same local cascading 1 x 1 convs. Upsamplers:
(group conv to 4x channels, ReLU, PixelShuffle 2) once for x2 or twice for x4; to 9x channels and
PixelShuffle 3 for x3.

The official checkpoint holds all three upsamplers; `CARNM` keeps all of them so it loads strictly,
and its forward uses the one of the scale it was built for (the others never execute).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from calib.models.common import DIV2K_RGB_MEAN, MeanShift, check_scale, conv1x1, conv3x3, shuffle_steps

CARN_SCALES = (2, 3, 4)


class ConvReLU(nn.Module):
    """A conv followed by ReLU, kept as ``body = Sequential(conv, ReLU)`` for the official names."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.body = nn.Sequential(conv, nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EResidualBlock(nn.Module):
    """Efficient residual block: ``relu(x + conv1x1(relu(gconv(relu(gconv(x))))))``."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels, groups=groups),
            nn.ReLU(),
            conv3x3(channels, channels, groups=groups),
            nn.ReLU(),
            conv1x1(channels, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class CascadingBlock(nn.Module):
    """Three applications of one shared `EResidualBlock` with local cascading 1 x 1 fusions."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.b1 = EResidualBlock(channels, groups)
        self.c1 = ConvReLU(conv1x1(channels * 2, channels))
        self.c2 = ConvReLU(conv1x1(channels * 3, channels))
        self.c3 = ConvReLU(conv1x1(channels * 4, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cascade(x, (self.b1, self.b1, self.b1), (self.c1, self.c2, self.c3))


def cascade(x: torch.Tensor, blocks: tuple[nn.Module, ...], fusions: tuple[nn.Module, ...]) -> torch.Tensor:
    """CARN's cascading: each fusion sees the concatenation of the input and every block output."""
    cat = x
    out = x
    for block, fuse in zip(blocks, fusions, strict=True):
        cat = torch.cat([cat, block(out)], dim=1)
        out = fuse(cat)
    return out


class _Upsample(nn.Module):
    """Group conv + ReLU + PixelShuffle stages for one scale (two x2 stages for x4)."""

    def __init__(self, channels: int, scale: int, groups: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for step in shuffle_steps(scale):
            conv = conv3x3(channels, channels * step * step, groups=groups)
            layers += [conv, nn.ReLU(), nn.PixelShuffle(step)]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MultiScaleUpsample(nn.Module):
    """The x2, x3 and x4 upsamplers of the multiscale network (``up2``, ``up3``, ``up4``)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.up2 = _Upsample(channels, 2, groups)
        self.up3 = _Upsample(channels, 3, groups)
        self.up4 = _Upsample(channels, 4, groups)


class CARNM(nn.Module):
    """CARN-M built for one scale; input and output in [0, 1].

    Args:
        scale: The factor the forward upsamples by (2, 3 or 4); all three upsamplers are kept.
        channels: Feature channels (64).
        groups: Groups of the 3 x 3 convs in residual blocks and upsamplers (4).
    """

    def __init__(self, scale: int, channels: int = 64, groups: int = 4) -> None:
        super().__init__()
        check_scale("carn_m", scale, CARN_SCALES)
        self.scale = scale
        self.sub_mean = MeanShift(DIV2K_RGB_MEAN, -1.0)
        self.add_mean = MeanShift(DIV2K_RGB_MEAN, 1.0)
        self.entry = conv3x3(3, channels)
        self.b1 = CascadingBlock(channels, groups)
        self.b2 = CascadingBlock(channels, groups)
        self.b3 = CascadingBlock(channels, groups)
        self.c1 = ConvReLU(conv1x1(channels * 2, channels))
        self.c2 = ConvReLU(conv1x1(channels * 3, channels))
        self.c3 = ConvReLU(conv1x1(channels * 4, channels))
        self.upsample = MultiScaleUpsample(channels, groups)
        self.exit = conv3x3(channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.entry(self.sub_mean(x))
        out = cascade(x, (self.b1, self.b2, self.b3), (self.c1, self.c2, self.c3))
        up = getattr(self.upsample, f"up{self.scale}")
        return self.add_mean(self.exit(up(out)))
