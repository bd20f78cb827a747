"""IMDN (Hui et al., "Lightweight Image Super-Resolution with Information Multi-distillation Network",
ACM MM 2019) and the 8-block IMDN baseline of the NTIRE 2022 efficient SR challenge.

IMDN: a 3 x 3 head, six information multi-distillation blocks (IMDB), a 1 x 1 fusion of all block
outputs with LeakyReLU(0.05), a 3 x 3 conv plus the head's features (long skip), and a conv +
PixelShuffle upsampler. An IMDB runs four 3 x 3 convs; after each of the first three it keeps a quarter
of the channels ("distilled", the first 16 of 64) and passes the rest to the next conv; the four
distilled parts are concatenated, reweighted by contrast-aware channel attention (CCA: per-channel
standard deviation plus mean -> 1 x 1 -> ReLU -> 1 x 1 -> sigmoid), fused by a 1 x 1 conv and added to
the block input. LeakyReLU slope is 0.05 throughout; the fourth conv has no activation.

Module names follow the official checkpoints (after dropping DataParallel's ``module.`` prefix).
The NTIRE 2022 baseline differs: eight blocks without CCA, a 3 x 3 conv closing the body inside the
long skip, and no fusion of all block outputs; its checkpoint's names are remapped
(`remap_imdn_ntire`).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from calib.models.common import chain_outputs, check_scale, conv1x1, conv3x3, pixel_shuffle_upsampler

IMDN_SCALES = (2, 3, 4)
IMDN_SLOPE = 0.05


class ContrastChannelAttention(nn.Module):
    """CCA: gate channels by sigmoid(MLP(std + mean)) of their spatial statistics."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            conv1x1(channels, channels // reduction),
            nn.ReLU(),
            conv1x1(channels // reduction, channels),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        # Population standard deviation over H x W, as the paper's "contrast" statistic.
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).pow(0.5)
        return x * self.conv_du(std + mean)


class IMDB(nn.Module):
    """Information multi-distillation block (IMDN's `IMDModule`); `cca=False` is KAIR's `IMDBlock`."""

    def __init__(self, channels: int = 64, distill_rate: float = 0.25, cca: bool = True) -> None:
        super().__init__()
        self.distilled = int(channels * distill_rate)
        self.remaining = channels - self.distilled
        self.c1 = conv3x3(channels, channels)
        self.c2 = conv3x3(self.remaining, channels)
        self.c3 = conv3x3(self.remaining, channels)
        self.c4 = conv3x3(self.remaining, self.distilled)
        self.act = nn.LeakyReLU(IMDN_SLOPE)
        self.cca = ContrastChannelAttention(self.distilled * 4) if cca else nn.Identity()
        self.c5 = conv1x1(self.distilled * 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.act(self.c1(x)), split, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), split, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), split, dim=1)
        d4 = self.c4(r3)
        return self.c5(self.cca(torch.cat([d1, d2, d3, d4], dim=1))) + x


class IMDN(nn.Module):
    """IMDN for one scale; input and output in [0, 1].

    Args:
        scale: Upscaling factor (2, 3 or 4).
        channels: Feature channels (64).
        blocks: Number of IMDBs (6).
    """

    def __init__(self, scale: int, channels: int = 64, blocks: int = 6) -> None:
        super().__init__()
        check_scale("imdn", scale, IMDN_SCALES)
        self.scale = scale
        self.fea_conv = conv3x3(3, channels)
        for i in range(1, blocks + 1):  # IMDB1..IMDBn: the official attribute names
            self.add_module(f"IMDB{i}", IMDB(channels))
        self.blocks = blocks
        self.c = nn.Sequential(conv1x1(channels * blocks, channels), nn.LeakyReLU(IMDN_SLOPE))
        self.LR_conv = conv3x3(channels, channels)
        self.upsampler = pixel_shuffle_upsampler(channels, 3, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(x)
        outs = chain_outputs([getattr(self, f"IMDB{i}") for i in range(1, self.blocks + 1)], fea)
        lr = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(lr)


class IMDNNtire(nn.Module):
    """The IMDN baseline of the NTIRE 2022 efficient SR challenge; input and output in [0, 1].

    head -> (8 x IMDB without CCA -> 3 x 3 conv) + head -> conv + PixelShuffle.

    Args:
        scale: Upscaling factor (the challenge used 4; 2 and 3 build the same body).
        channels: Feature channels (64).
        blocks: Number of blocks (8).
    """

    def __init__(self, scale: int, channels: int = 64, blocks: int = 8) -> None:
        super().__init__()
        check_scale("imdn_ntire", scale, IMDN_SCALES)
        self.scale = scale
        self.head = conv3x3(3, channels)
        self.blocks = nn.Sequential(*(IMDB(channels, cca=False) for _ in range(blocks)))
        self.body_conv = conv3x3(channels, channels)
        self.upsampler = pixel_shuffle_upsampler(channels, 3, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.head(x)
        return self.upsampler(self.body_conv(self.blocks(fea)) + fea)


def remap_imdn(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix that the official IMDN checkpoints carry (DataParallel)."""
    return {key.removeprefix("module."): value for key, value in state.items()}


_NTIRE_RULES = (
    # KAIR's layout: model.0 head, model.1 = ShortcutBlock(sub = [blocks..., conv]), model.2 upsampler
    # conv; "conv1.0" is a conv inside a (conv, LeakyReLU) Sequential; conv1..conv4, conv1x1 are the
    # IMDB's c1..c4, c5.
    (re.compile(r"^model\.0\."), "head."),
    (re.compile(r"^model\.1\.sub\.(\d+)\.conv([123])\.0\."), r"blocks.\1.c\2."),
    (re.compile(r"^model\.1\.sub\.(\d+)\.conv4\."), r"blocks.\1.c4."),
    (re.compile(r"^model\.1\.sub\.(\d+)\.conv1x1\."), r"blocks.\1.c5."),
    (re.compile(r"^model\.1\.sub\.\d+\.(weight|bias)$"), r"body_conv.\1"),  # the conv closing the body
    (re.compile(r"^model\.2\."), "upsampler.0."),
)


def remap_imdn_ntire(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the NTIRE 2022 baseline's KAIR-style keys to `IMDNNtire`'s names."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key.removeprefix("module.")
        for pattern, repl in _NTIRE_RULES:
            new, n = pattern.subn(repl, new)
            if n:
                break
        out[new] = value
    return out
