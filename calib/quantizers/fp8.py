"""FP8 (E4M3) fake quantizers: per-tensor activations and per-output-channel weights.

Both compute, in float32, what the ONNX pair QuantizeLinear -> DequantizeLinear with a float8e4m3fn
zero point computes (opset 19, saturate=1): q = e4m3(clamp(x / s, -448, 448)), x_hat = q * s, where
e4m3 rounds to the nearest representable E4M3 value, ties to even, subnormals included (torch's
`float8_e4m3fn` cast). The clamp makes saturation explicit instead of relying on the cast's overflow
rule. Gradients: straight through inside [-448, 448] (FP8 rows are not finetuned; the rule only keeps
the quantizers usable in a graph that is).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from calib.errors import CalibError
from calib.quantizers.uniform import as_float32, positive_scale
from drq.errors import RecipeError
from drq.recipe import FP8_E4M3_MAX, FP8Act, WeightQuant, f32


class _CastE4M3STE(torch.autograd.Function):
    """Round float32 to the nearest E4M3 value (ties to even) forward, identity backward."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 - autograd signature
        return x.to(torch.float8_e4m3fn).to(torch.float32)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004
        return grad


def fake_e4m3(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """e4m3(clamp(x / scale, -448, 448)) * scale in float32 (`scale` broadcasts against `x`)."""
    v = torch.clamp(as_float32(x) / scale, -FP8_E4M3_MAX, FP8_E4M3_MAX)
    return _CastE4M3STE.apply(v) * scale


class FP8ActQuantizer(nn.Module):
    """Per-tensor FP8 E4M3 fake quantizer of an activation; learnable 0-dim `scale` (amax / 448)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        try:
            spec = FP8Act(scale=f32(scale))
        except RecipeError as err:
            raise CalibError(f"FP8ActQuantizer: {err}") from err
        self.bits = spec.bits
        self.scale = nn.Parameter(torch.tensor(spec.scale, dtype=torch.float32))

    @classmethod
    def from_amax(cls, amax: float) -> FP8ActQuantizer:
        """The quantizer whose largest code 448 maps to `amax` (a zero range gets the smallest scale)."""
        return cls(max(float(amax), 1e-8) / FP8_E4M3_MAX)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fake_e4m3(x, positive_scale(self.scale))

    def to_recipe(self) -> FP8Act:
        """The recipe entry reproducing this quantizer's forward exactly."""
        with torch.no_grad():
            return FP8Act(scale=f32(positive_scale(self.scale).item()))

    @classmethod
    def from_recipe(cls, act: FP8Act) -> FP8ActQuantizer:
        """Build the quantizer a recipe entry describes.

        Raises:
            CalibError: `act` is not an `FP8Act`.
        """
        if not isinstance(act, FP8Act):
            raise CalibError(f"FP8ActQuantizer.from_recipe: expected an fp8 act, got {type(act).__name__}")
        return cls(act.scale)

    def extra_repr(self) -> str:
        return f"e4m3fn, scale={self.scale.item():.6g}"


class FP8WeightQuantizer(nn.Module):
    """FP8 E4M3 weight fake quantizer, one scale per output channel (`axis`) or per tensor (None)."""

    def __init__(self, scale: torch.Tensor | Sequence[float] | float, axis: int | None) -> None:
        super().__init__()
        values = torch.as_tensor(scale, dtype=torch.float32).detach().clone().reshape(-1)
        try:
            spec = WeightQuant(
                bits=8, scale=tuple(float(v) for v in values.tolist()), axis=axis, format="e4m3fn"
            )
        except RecipeError as err:
            raise CalibError(f"FP8WeightQuantizer: {err}") from err
        self.bits = spec.bits
        self.axis = spec.axis
        self.scale = nn.Parameter(values)

    @classmethod
    def from_weight(cls, weight: torch.Tensor, axis: int | None) -> FP8WeightQuantizer:
        """Scales amax / 448 of `weight` per channel along `axis` (all-zero channels get 1e-8 / 448)."""
        w = weight.detach().float().abs()
        if axis is None:
            amax = w.max().reshape(1)
        else:
            amax = w.transpose(0, axis).reshape(w.shape[axis], -1).amax(dim=1)
        return cls(torch.clamp(amax, min=1e-8) / FP8_E4M3_MAX, axis)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        s = positive_scale(self.scale)
        if self.axis is None:
            return fake_e4m3(weight, s.reshape(()))
        if weight.dim() <= self.axis or weight.shape[self.axis] != s.numel():
            raise CalibError(
                f"FP8WeightQuantizer: {s.numel()} scales do not match axis {self.axis} "
                f"of a weight shaped {tuple(weight.shape)}"
            )
        shape = [1] * weight.dim()
        shape[self.axis] = -1
        return fake_e4m3(weight, s.reshape(shape))

    def to_recipe(self) -> WeightQuant:
        """The recipe entry reproducing this quantizer's forward exactly."""
        with torch.no_grad():
            scale = tuple(f32(v) for v in positive_scale(self.scale).tolist())
        return WeightQuant(bits=8, scale=scale, axis=self.axis, format="e4m3fn")

    @classmethod
    def from_recipe(cls, wq: WeightQuant) -> FP8WeightQuantizer:
        """Build the quantizer a recipe entry describes.

        Raises:
            CalibError: `wq` is not an e4m3fn weight quant.
        """
        if not isinstance(wq, WeightQuant) or wq.format != "e4m3fn":
            raise CalibError("FP8WeightQuantizer.from_recipe: expected an e4m3fn weight quant")
        return cls(torch.tensor(wq.scale, dtype=torch.float32), wq.axis)

    def extra_repr(self) -> str:
        return f"e4m3fn, axis={self.axis}, channels={self.scale.numel()}"
