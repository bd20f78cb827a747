"""RDN (Zhang et al., "Residual Dense Network for Image Super-Resolution", CVPR 2018).

Two 3 x 3 shallow-feature convs (SFENet1, SFENet2; G0 = 64) -> D residual dense blocks, each C densely
connected (3 x 3 conv to G channels + ReLU, concatenated onto its input), local feature fusion by 1 x 1
back to G0, plus the block input -> global feature fusion over all block outputs (1 x 1 then 3 x 3),
plus SFENet1's output -> upsampler (conv to G * s^2, PixelShuffle; twice x2 for x4) -> 3 x 3 to RGB.
Configuration B of the paper: D = 16, C = 8, G = 64.

The authors' code works on 0-255 pixels without mean subtraction; this module keeps that range for its
weights and scales inside forward, so callers pass [0, 1]. Names follow the authors' code
(``SFENet1``, ``RDBs.<d>.convs.<c>.conv.0``, ``RDBs.<d>.LFF``, ``GFF.<i>``, ``UPNet.<i>``).
"""

from __future__ import annotations

import torch
from torch import nn

from calib.models.common import chain_outputs, check_scale, conv1x1, conv3x3

RDN_SCALES = (2, 3, 4)


class DenseLayer(nn.Module):
    """``cat(x, relu(conv3x3(x)))``: one densely connected layer of an RDB."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(conv3x3(in_channels, growth), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(x)], dim=1)


class RDB(nn.Module):
    """Residual dense block: C dense layers, 1 x 1 local feature fusion, local residual."""

    def __init__(self, channels: int, growth: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(*(DenseLayer(channels + i * growth, growth) for i in range(layers)))
        self.LFF = conv1x1(channels + layers * growth, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


class RDN(nn.Module):
    """RDN for one scale; input and output in [0, 1] (0-255 inside, as in the authors' code).

    Args:
        scale: Upscaling factor (2, 3 or 4).
        g0: Feature channels between blocks (64).
        blocks: D, the number of RDBs (16).
        layers: C, dense layers per RDB (8).
        growth: G, the growth rate (64).
        input_range: Pixel range the weights expect (255 in the authors' code).
    """

    def __init__(
        self,
        scale: int,
        g0: int = 64,
        blocks: int = 16,
        layers: int = 8,
        growth: int = 64,
        input_range: float = 255.0,
    ) -> None:
        super().__init__()
        check_scale("rdn", scale, RDN_SCALES)
        self.scale = scale
        self.input_range = float(input_range)
        self.SFENet1 = conv3x3(3, g0)
        self.SFENet2 = conv3x3(g0, g0)
        self.RDBs = nn.ModuleList(RDB(g0, growth, layers) for _ in range(blocks))
        self.GFF = nn.Sequential(conv1x1(blocks * g0, g0), conv3x3(g0, g0))
        if scale == 4:
            up: list[nn.Module] = [
                conv3x3(g0, growth * 4),
                nn.PixelShuffle(2),
                conv3x3(growth, growth * 4),
                nn.PixelShuffle(2),
            ]
        else:
            up = [conv3x3(g0, growth * scale * scale), nn.PixelShuffle(scale)]
        self.UPNet = nn.Sequential(*up, conv3x3(growth, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.SFENet1(x * self.input_range)
        outs = chain_outputs(list(self.RDBs), self.SFENet2(f1))
        out = self.GFF(torch.cat(outs, dim=1)) + f1
        return self.UPNet(out) / self.input_range
