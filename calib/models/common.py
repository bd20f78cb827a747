"""Building blocks shared by several architectures of the zoo.

Every zoo model takes RGB images in [0, 1] and returns [0, 1]. A network trained on 0-255 pixels
keeps its weights untouched and scales inside its own forward (`to_model_range` /
`from_model_range`), so quantizers see the same Conv2d names and values as the original code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
"""Mean colour of DIV2K in [0, 1], subtracted by EDSR and CARN before the first conv."""


def conv3x3(in_channels: int, out_channels: int, bias: bool = True, groups: int = 1) -> nn.Conv2d:
    """A 3 x 3 convolution with 'same' padding."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias, groups=groups)


def conv1x1(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """A 1 x 1 convolution."""
    return nn.Conv2d(in_channels, out_channels, 1, bias=bias)


class MeanShift(nn.Module):
    """Add or subtract a fixed RGB mean, stored as a 1 x 1 conv's `weight` and `bias`.

    The official EDSR/CARN code implements this as a frozen Conv2d, so checkpoints carry a
    ``weight`` (3 x 3 x 1 x 1, the identity) and a ``bias``. They are buffers here, not a Conv2d:
    the shift is an exact affine map of the input that no quantizer should touch, and the first
    quantizable layer of the network stays its real head conv.
    """

    def __init__(self, mean: tuple[float, float, float], sign: float, rgb_range: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("weight", torch.eye(3).view(3, 3, 1, 1))
        self.register_buffer("bias", sign * rgb_range * torch.tensor(mean, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias)


def pixel_shuffle_upsampler(in_channels: int, out_channels: int, scale: int) -> nn.Sequential:
    """One 3 x 3 conv to ``out_channels * scale**2`` channels, then PixelShuffle (IMDN/RFDN/RLFN)."""
    return nn.Sequential(conv3x3(in_channels, out_channels * scale * scale), nn.PixelShuffle(scale))


def shuffle_steps(scale: int) -> tuple[int, ...]:
    """PixelShuffle factors of a staged upsampler: one x3 stage for 3, x2 stages for 2 and 4."""
    return (3,) if scale == 3 else (2,) * {2: 1, 4: 2}[scale]


def chain_outputs(blocks: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """Run `blocks` one after the other from `x` and return every block's output, in order."""
    outs = []
    for block in blocks:
        x = block(x)
        outs.append(x)
    return outs


def check_scale(name: str, scale: int, scales: tuple[int, ...]) -> None:
    """Reject a scale the architecture has no upsampler for (`build_model` checks first).

    Raises:
        ValueError: `scale` is not in `scales`.
    """
    if scale not in scales:
        raise ValueError(f"{name}: scale {scale} not in {scales}")
