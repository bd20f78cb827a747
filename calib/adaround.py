"""Learned rounding of the weights (AdaRound, Nagel et al. ICML 2020), reconstructed block by block.

Beyond the paper's method (which trains quantizer parameters only): the measured cause of the W4A4 gap
is the 4-bit weights, and rounding each weight to nearest is not what minimises a layer's output error.
For every weight w with step s the code becomes floor(w / s) + h, h in {0, 1}, learned through a
continuous relaxation:

* h(V) = clamp(sigmoid(V) (zeta - gamma) + gamma, 0, 1), zeta = 1.1, gamma = -0.1 (rectified sigmoid),
  V initialised so that h equals the fractional part of w / s (the soft weight starts at w, clamped);
* loss per block = mean over pixels of the squared error summed over channels between the block's output
  with soft-rounded weights (activations fake-quantized as in the recipe) and the FP block output, plus
  reg_weight * sum (1 - |2 h - 1|^beta) once a warm-up fraction of the iterations has passed, beta
  annealed from beta_start to beta_end (cosine), which drives every h to 0 or 1;
* finally h = [V >= 0], kept only where it lowers the block's error on the calibration crops below
  that of nearest rounding (else nearest); the codes are stored in the recipe (`WeightQuant.codes`), so
  export uses them.

Blocks are the model's top-level children that hold quantized layers, in execution order, each
reconstructed on the unlabeled LR crops: its input comes from the model quantized so far (earlier blocks
already rounded, later ones at nearest rounding), its target from the FP model. Blocks that take more
than one tensor or run more than once are left at nearest rounding (listed in the stats).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from calib.errors import CalibError
from calib.quantizers import QuantLayer, WeightQuantizer, set_quant_enabled

ZETA, GAMMA = 1.1, -0.1


@dataclass(frozen=True)
class AdaRoundConfig:
    """Schedule of the block-wise reconstruction."""

    iters: int = 200
    lr: float = 1e-2
    reg_weight: float = 0.01
    beta_start: float = 20.0
    beta_end: float = 2.0
    warmup: float = 0.2
    batches: int = 16  # calibration batches reconstructed on (the first ones)

    def __post_init__(self) -> None:
        for name in ("iters", "batches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CalibError(f"adaround {name}: must be a positive integer, got {value!r}")
        for name in ("lr", "beta_start", "beta_end"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise CalibError(f"adaround {name}: must be a positive number, got {value!r}")
        if not (isinstance(self.reg_weight, (int, float)) and self.reg_weight >= 0):
            raise CalibError(f"adaround reg_weight: must be >= 0, got {self.reg_weight!r}")
        if not (isinstance(self.warmup, (int, float)) and 0 <= self.warmup < 1):
            raise CalibError(f"adaround warmup: must be in [0, 1), got {self.warmup!r}")


@dataclass(frozen=True)
class BlockLog:
    block: str
    layers: int
    rec_before: float
    rec_after: float
    flipped: float  # fraction of weights whose code differs from round-to-nearest
    kept: bool = True  # False: the learned codes did not lower the error, the block keeps nearest rounding


@dataclass(frozen=True)
class AdaRoundStats:
    blocks: tuple[BlockLog, ...] = field(default_factory=tuple)
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "skipped": list(self.skipped),
            "blocks": [vars(b).copy() for b in self.blocks],
        }


class SoftRounding(nn.Module):
    """Stands in for a layer's WeightQuantizer during reconstruction: w_soft = clamp(floor + h(V)) s."""

    def __init__(self, quantizer: WeightQuantizer, weight: torch.Tensor) -> None:
        super().__init__()
        with torch.no_grad():
            s = quantizer._broadcast_scale(weight.float()).detach()
            v = weight.float() / s
            floor = torch.floor(v)
            rest = torch.clamp(v - floor, 0.01, 0.99)  # keep V finite
            alpha = -torch.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)
        self.qmax = quantizer.qmax
        self.register_buffer("step", s)
        self.register_buffer("floor", floor)
        self.register_buffer("nearest", torch.clamp(torch.round(v), -self.qmax, self.qmax))
        self.alpha = nn.Parameter(alpha)

    def h(self) -> torch.Tensor:
        return torch.clamp(torch.sigmoid(self.alpha) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 - stands in for w_quant(w)
        return torch.clamp(self.floor + self.h(), -float(self.qmax), float(self.qmax)) * self.step

    def regulariser(self, beta: float) -> torch.Tensor:
        return (1.0 - torch.abs(2.0 * self.h() - 1.0).pow(beta)).sum()

    def hard_codes(self) -> torch.Tensor:
        up = (self.alpha.detach() >= 0).to(self.floor.dtype)
        return torch.clamp(self.floor + up, -float(self.qmax), float(self.qmax))


class StopForward(Exception):
    """Ends a forward pass once the block or layer of interest has been reached (the rest of the model
    is not needed); raised by a hook, caught around the forward call."""


def model_blocks(
    model: nn.Module, layers: dict[str, QuantLayer], batch: torch.Tensor, expand_sequential: bool = False
) -> list[tuple[str, nn.Module]]:
    """Top-level children holding quantized layers, in the order the FP forward first runs them.

    With `expand_sequential`, an nn.Sequential child is replaced by its own children (recursively), so a
    trunk of repeated blocks gives one block per element.
    """
    wrapped = {id(layer) for layer in layers.values()}
    holders: dict[str, nn.Module] = {}

    def collect(parent: nn.Module, prefix: str) -> None:
        for name, child in parent.named_children():
            full = f"{prefix}{name}"
            if not (id(child) in wrapped or any(id(m) in wrapped for m in child.modules())):
                continue
            if expand_sequential and isinstance(child, nn.Sequential):
                collect(child, f"{full}.")
            else:
                holders[full] = child

    collect(model, "")
    return [(name, holders[name]) for name in first_run_order(model, holders, batch)]


def first_run_order(model: nn.Module, modules: dict[str, nn.Module], batch: torch.Tensor) -> list[str]:
    """Names of `modules` (submodules of `model`) in the order one FP forward pass on `batch` first runs
    them; modules that never run are left out."""
    order: list[str] = []

    def seen(name: str) -> Callable[..., None]:
        return lambda *_: order.append(name) if name not in order else None

    handles = [module.register_forward_pre_hook(seen(name)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            set_quant_enabled(model, False)
            model(batch)
    finally:
        set_quant_enabled(model, True)
        for h in handles:
            h.remove()
    return order


def block_io(
    model: nn.Module, block: nn.Module, batches: Sequence[torch.Tensor], quantized: bool, want: str
) -> list[torch.Tensor] | None:
    """The block's single input ('input', quantized model) or output ('output') per batch; None when the
    block takes several tensors or runs more than once."""
    seen: list[Any] = []

    def pre(_m: nn.Module, args: tuple[Any, ...]) -> None:
        seen.append(args)
        if want == "input":
            raise StopForward

    def post(_m: nn.Module, _args: Any, out: Any) -> None:
        seen.append(out)
        raise StopForward

    handle = block.register_forward_pre_hook(pre) if want == "input" else block.register_forward_hook(post)
    out: list[torch.Tensor] = []
    try:
        set_quant_enabled(model, quantized)
        with torch.no_grad():
            for batch in batches:
                seen.clear()
                try:
                    model(batch)
                except StopForward:
                    pass
                value = seen[0] if len(seen) == 1 else None
                if want == "input":
                    value = value[0] if isinstance(value, tuple) and len(value) == 1 else None
                if not isinstance(value, torch.Tensor):
                    return None
                out.append(value.detach())
    finally:
        handle.remove()
        set_quant_enabled(model, True)
    return out


def _beta(config: AdaRoundConfig, it: int) -> float | None:
    """The regulariser's exponent at iteration `it` (None during the warm-up)."""
    warm = int(config.warmup * config.iters)
    if it < warm:
        return None
    rel = (it - warm) / max(1, config.iters - warm)
    return config.beta_end + 0.5 * (config.beta_start - config.beta_end) * (1 + math.cos(rel * math.pi))


def _rec_error(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (out - target).pow(2).sum(1).mean()


def _mean_error(block: nn.Module, inputs: list[torch.Tensor], targets: list[torch.Tensor]) -> float:
    with torch.no_grad():
        return sum(float(_rec_error(block(x), t)) for x, t in zip(inputs, targets, strict=True)) / len(inputs)


def _reconstruct(
    name: str,
    block: nn.Module,
    block_layers: list[QuantLayer],
    inputs: list[torch.Tensor],
    targets: list[torch.Tensor],
    config: AdaRoundConfig,
) -> BlockLog:
    """Learn the rounding of `block_layers` so that block(input) matches the FP output, then fix codes."""
    rec_before = _mean_error(block, inputs, targets)
    originals = [layer.w_quant for layer in block_layers]
    soft = [SoftRounding(q, layer.layer.weight) for q, layer in zip(originals, block_layers, strict=True)]  # type: ignore[arg-type]
    for layer, rounding in zip(block_layers, soft, strict=True):
        layer.w_quant = rounding  # type: ignore[assignment]
    opt = torch.optim.Adam([r.alpha for r in soft], lr=config.lr)
    try:
        for it in range(config.iters):
            i = it % len(inputs)
            loss = _rec_error(block(inputs[i]), targets[i])
            beta = _beta(config, it)
            if beta is not None and config.reg_weight > 0:
                loss = loss + config.reg_weight * sum(r.regulariser(beta) for r in soft)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    finally:
        for layer, quantizer in zip(block_layers, originals, strict=True):
            layer.w_quant = quantizer
    flipped = total = 0
    for rounding, quantizer in zip(soft, originals, strict=True):
        codes = rounding.hard_codes()
        flipped += int((codes != rounding.nearest).sum())
        total += codes.numel()
        quantizer.set_codes(codes)  # type: ignore[union-attr]
    rec_after = _mean_error(block, inputs, targets)
    kept = rec_after < rec_before
    if not kept:  # a short schedule can end worse than nearest rounding: keep nearest then
        for rounding, quantizer in zip(soft, originals, strict=True):
            quantizer.set_codes(rounding.nearest)  # type: ignore[union-attr]
        flipped, rec_after = 0, rec_before
    return BlockLog(name, len(block_layers), rec_before, rec_after, flipped / max(1, total), kept)


def adaround(
    model: nn.Module,
    layers: dict[str, QuantLayer],
    batches: Sequence[torch.Tensor],
    config: AdaRoundConfig = AdaRoundConfig(),
    progress: Any | None = None,
) -> AdaRoundStats:
    """Learn the weight rounding of every integer-weight QuantLayer of `model`, block by block.

    The weight scales stay as they are; each layer's WeightQuantizer ends with fixed codes.

    Raises:
        CalibError: no batches, or a layer without an integer weight quantizer.
    """
    if not batches:
        raise CalibError("adaround: no calibration batches")
    for name, layer in layers.items():
        if type(layer.w_quant) is not WeightQuantizer:
            raise CalibError(f"adaround: layer {name!r} has no integer weight quantizer")
    started = time.perf_counter()
    data = list(batches)[: config.batches]
    frozen = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    model.eval()
    blocks = model_blocks(model, layers, data[0])
    bar = progress(len(blocks), "adaround") if progress is not None else None
    logs: list[BlockLog] = []
    skipped: list[str] = []
    try:
        for name, block in blocks:
            block_layers = [m for m in block.modules() if isinstance(m, QuantLayer)]
            inputs = block_io(model, block, data, True, "input")
            targets = block_io(model, block, data, False, "output")
            if inputs is None or targets is None:
                skipped.append(name)
            else:
                logs.append(_reconstruct(name, block, block_layers, inputs, targets, config))
            if bar is not None:
                bar.update(1)
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
        set_quant_enabled(model, True)
        if bar is not None:
            bar.close()
    return AdaRoundStats(tuple(logs), tuple(skipped), time.perf_counter() - started)
