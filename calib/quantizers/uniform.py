"""Uniform fake quantizers: per-tensor activations and symmetric narrow-range weights.

Both compute in float32 exactly as the ONNX QuantizeLinear / DequantizeLinear pair does from the
recipe's float32 scale: q = clamp(round(x / s) + z, qmin, qmax) (round half to even, a true float32
division), x_hat = (q - z) * s. Gradients follow the LSQ rules of `calib.quantizers.ste`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from calib.errors import CalibError
from calib.quantizers.ste import round_ste, valid_or
from drq.errors import RecipeError
from drq.recipe import UniformAct, WeightQuant, decode_weight_codes, encode_weight_codes, f32

_TINY = float(np.finfo(np.float32).tiny)


def positive_scale(scale: torch.Tensor) -> torch.Tensor:
    """The scale used in the forward pass: `scale` itself when > 0 (always for a valid recipe).

    A learnable scale pushed below the smallest normal float32 by an optimiser is replaced by it in the
    forward pass while its gradient still reaches the parameter (see `ste.valid_or`).
    """
    floor = torch.full_like(scale, _TINY)
    return valid_or(scale >= floor, scale, floor)


def as_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` as float32 (a no-op for float32 input): every grid is defined in float32."""
    return x if x.dtype == torch.float32 else x.float()


class UniformActQuantizer(nn.Module):
    """Per-tensor uniform fake quantizer of an activation.

    Signed: codes [-2^(b-1), 2^(b-1)-1] (zero_point usually 0). Unsigned: codes [0, 2^b-1] with a
    zero point (asymmetric). Learnable: the 0-dim parameter `scale`; `zero_point` is fixed.

    Gradients (LSQ): d x_hat / d x = 1 where qmin <= round(x/s) + z <= qmax (judged before rounding:
    qmin - z <= x/s <= qmax - z), else 0; d x_hat / d s = round(x/s) - x/s inside, (qmin - z) or
    (qmax - z) outside.
    """

    def __init__(self, bits: int, scale: float, zero_point: int = 0, signed: bool = True) -> None:
        super().__init__()
        try:
            spec = UniformAct(bits=bits, scale=f32(scale), zero_point=zero_point, signed=signed)
        except RecipeError as err:
            raise CalibError(f"UniformActQuantizer: {err}") from err
        self.bits = spec.bits
        self.zero_point = spec.zero_point
        self.signed = spec.signed
        self.qmin = spec.qmin
        self.qmax = spec.qmax
        self.scale = nn.Parameter(torch.tensor(spec.scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fake-quantize `x` (any shape); returns float32 of the same shape."""
        x = as_float32(x)
        s = positive_scale(self.scale)
        z = self.zero_point
        # round(x/s) + z saturated to [qmin, qmax], minus z, equals round(clamp(x/s, qmin-z, qmax-z));
        # + 0.0 turns a -0.0 code into +0.0 as an integer code would be.
        q = round_ste(torch.clamp(x / s, float(self.qmin - z), float(self.qmax - z))) + 0.0
        return q * s

    def to_recipe(self) -> UniformAct:
        """The recipe entry reproducing this quantizer's forward exactly."""
        with torch.no_grad():
            scale = f32(positive_scale(self.scale).item())
        return UniformAct(bits=self.bits, scale=scale, zero_point=self.zero_point, signed=self.signed)

    @classmethod
    def from_recipe(cls, act: UniformAct) -> UniformActQuantizer:
        """Build the quantizer a recipe entry describes.

        Raises:
            CalibError: `act` is not a `UniformAct`.
        """
        if not isinstance(act, UniformAct):
            raise CalibError(
                f"UniformActQuantizer.from_recipe: expected a uniform act, got {type(act).__name__}"
            )
        return cls(act.bits, act.scale, act.zero_point, act.signed)

    def extra_repr(self) -> str:
        return (
            f"bits={self.bits}, signed={self.signed}, zero_point={self.zero_point}, "
            f"scale={self.scale.item():.6g}"
        )


class WeightQuantizer(nn.Module):
    """Symmetric narrow-range weight fake quantizer: codes [-(2^(b-1)-1), 2^(b-1)-1], zero point 0.

    `axis` is the output-channel axis of the weight (0 for Conv2d/Linear, 1 for ConvTranspose2d) with
    one scale per channel, or None for one per-tensor scale (the paper's learned clip,
    u_w = scale * (2^(b-1)-1)). Learnable: the parameter `scale` of shape (C,) or (1,).

    Gradients (LSQ): identity for weights with |w/s| <= qmax, 0 beyond; d w_hat / d s =
    round(w/s) - w/s inside, +-qmax outside (summed over each channel).

    Fixed codes (`set_codes`, learned rounding): w_hat = codes * s, whatever the weight; d w_hat / d s =
    codes, and the weight gets no gradient.
    """

    def __init__(
        self,
        bits: int,
        scale: torch.Tensor | Sequence[float] | float,
        axis: int | None,
        codes: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        values = torch.as_tensor(scale, dtype=torch.float32).detach().clone().reshape(-1)
        try:
            spec = WeightQuant(bits=bits, scale=tuple(float(v) for v in values.tolist()), axis=axis)
        except RecipeError as err:
            raise CalibError(f"WeightQuantizer: {err}") from err
        self.bits = spec.bits
        self.axis = spec.axis
        self.qmax = spec.qmax
        self.scale = nn.Parameter(values)
        self.codes: torch.Tensor | None
        self.register_buffer("codes", None)
        if codes is not None:
            self.set_codes(codes)

    def set_codes(self, codes: torch.Tensor) -> None:
        """Fix the integer codes (any integer or integral float tensor within +-qmax).

        Raises:
            CalibError: a code outside the narrow range.
        """
        fixed = torch.as_tensor(codes).detach().to(torch.int8 if self.bits <= 8 else torch.int16)
        if fixed.numel() == 0 or int(fixed.abs().max()) > self.qmax:
            raise CalibError(f"WeightQuantizer: codes must be non-empty and within +-{self.qmax}")
        self.codes = fixed.clone()

    def _broadcast_scale(self, weight: torch.Tensor) -> torch.Tensor:
        s = positive_scale(self.scale)
        if self.axis is None:
            return s.reshape(())
        if weight.dim() <= self.axis or weight.shape[self.axis] != s.numel():
            raise CalibError(
                f"WeightQuantizer: {s.numel()} scales do not match axis {self.axis} "
                f"of a weight shaped {tuple(weight.shape)}"
            )
        shape = [1] * weight.dim()
        shape[self.axis] = -1
        return s.reshape(shape)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """Fake-quantize a weight tensor; returns float32 of the same shape."""
        weight = as_float32(weight)
        s = self._broadcast_scale(weight)
        if self.codes is not None:
            if self.codes.numel() != weight.numel():
                raise CalibError(
                    f"WeightQuantizer: {self.codes.numel()} codes for a weight shaped {tuple(weight.shape)}"
                )
            return self.codes.reshape(weight.shape).to(torch.float32) * s
        q = round_ste(torch.clamp(weight / s, float(-self.qmax), float(self.qmax))) + 0.0
        return q * s

    def to_recipe(self) -> WeightQuant:
        """The recipe entry reproducing this quantizer's forward exactly."""
        with torch.no_grad():
            scale = tuple(f32(v) for v in positive_scale(self.scale).tolist())
        codes = "" if self.codes is None else encode_weight_codes(self.codes.cpu().numpy())
        return WeightQuant(bits=self.bits, scale=scale, axis=self.axis, codes=codes)

    @classmethod
    def from_recipe(cls, wq: WeightQuant) -> WeightQuantizer:
        """Build the quantizer a recipe entry describes.

        Raises:
            CalibError: `wq` is not a `WeightQuant`.
        """
        if not isinstance(wq, WeightQuant):
            raise CalibError(f"WeightQuantizer.from_recipe: expected a weight quant, got {type(wq).__name__}")
        codes = torch.from_numpy(decode_weight_codes(wq)) if wq.codes else None
        return cls(wq.bits, torch.tensor(wq.scale, dtype=torch.float32), wq.axis, codes)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, axis={self.axis}, channels={self.scale.numel()}"
