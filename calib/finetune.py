"""Sensitivity-aware finetuning (SAFT) and its uniform-weight variant (VFT) of Wang et al. (ICCV 2025).

Only quantizer parameters train; weights and the data stay fixed. For a batch of LR crops:

* the FP pass runs the same model with every QuantLayer's quantization switched off (exact FP forward;
  no deep copy, half the memory of a second model and the same cost), capturing the input feature map
  F_fp^k of each quantized layer k through `QuantLayer.input_hook` and the SR output;
* the quantized pass captures F_q^k and its SR output, with gradients;
* L_rec = mean |SR_q - SR_fp| (L1), and
  L_sen = sum_k s_k d_k / sum_k s_k with d_k = mean over samples of
  || F_fp^k / ||F_fp^k||_2 - F_q^k / ||F_q^k||_2 ||_2 (norms over each sample's C, H, W).
  SAFT's s_k is the softmax over layers of the mean standard deviation of F_fp^k on the calibration set
  (so L_sen is a sensitivity-weighted mean of d_k); VFT uses s_k = 1 (the plain mean);
* L = L_sen + 5 L_rec (`rec_weight`); L_sen lives in `calib.saft_loss`.

The trained group cycles by epoch: weight scales (u_w), then the activation bounds (l_a, u_a, or a
uniform quantizer's scale), then the breakpoints bp. Adam, lr 1e-3, decayed x0.9 after each epoch.
Data order is fixed, so a run is deterministic on a given machine.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from calib.errors import CalibError
from calib.quantizers import DualRegionActQuantizer, QuantLayer, capture_first_inputs, set_quant_enabled
from calib.saft_loss import check_fp_targets, fp_is_normalised, fp_target, sensitivity_loss

GROUPS = ("weight_scale", "act_bounds", "breakpoint")
_FLOOR = 0.01


class ProgressLike(Protocol):
    """What the finetuning loop needs of a progress bar (`drq.imaging.progress.Progress`)."""

    def update(self, n: int = 1, **postfix: Any) -> None: ...

    def close(self) -> None: ...


ProgressFactory = Any  # Callable[[int, str], ProgressLike]; kept loose so a class can be passed


@dataclass(frozen=True)
class FinetuneConfig:
    """Schedule of SAFT / VFT (the paper's defaults)."""

    epochs: int = 10
    lr: float = 1e-3
    lr_decay: float = 0.9
    rec_weight: float = 5.0

    def __post_init__(self) -> None:
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise CalibError(f"epochs: must be a positive integer, got {self.epochs!r}")
        for name in ("lr", "lr_decay"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise CalibError(f"{name}: must be a positive number, got {value!r}")
        if not (
            isinstance(self.rec_weight, (int, float))
            and math.isfinite(self.rec_weight)
            and self.rec_weight >= 0
        ):
            raise CalibError(f"rec_weight: must be a non-negative number, got {self.rec_weight!r}")


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    group: str
    lr: float
    l_sen: float
    l_rec: float
    loss: float


@dataclass(frozen=True)
class FinetuneStats:
    epochs: tuple[EpochLog, ...] = field(default_factory=tuple)
    steps: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": self.seconds, "epochs": [vars(e).copy() for e in self.epochs]}


def saft_weights(mean_stds: dict[str, float]) -> dict[str, float]:
    """s_k = softmax over layers of each layer's mean input standard deviation."""
    names = list(mean_stds)
    s = torch.softmax(torch.tensor([mean_stds[n] for n in names], dtype=torch.float64), dim=0)
    return {n: float(v) for n, v in zip(names, s.tolist(), strict=True)}


def parameter_groups(layers: dict[str, QuantLayer]) -> dict[str, list[nn.Parameter]]:
    """The three groups that take turns training, in `GROUPS` order."""
    groups: dict[str, list[nn.Parameter]] = {g: [] for g in GROUPS}
    for layer in layers.values():
        if layer.w_quant is not None:
            groups["weight_scale"].append(layer.w_quant.scale)
        act = layer.a_quant
        if isinstance(act, DualRegionActQuantizer):
            groups["act_bounds"] += [act.lower, act.upper]
            groups["breakpoint"].append(act.breakpoint)
        elif act is not None:
            groups["act_bounds"].append(act.scale)
    return groups


def _optimizer_groups(layers: dict[str, QuantLayer], lr: float) -> list[dict[str, Any]]:
    """Adam groups: each weight scale learns in u_w = scale * qmax units (the paper's parameter), so its
    step is lr / qmax; activation bounds and breakpoints are the paper's parameters themselves."""
    out: list[dict[str, Any]] = []
    acts: list[nn.Parameter] = []
    for layer in layers.values():
        if layer.w_quant is not None:
            out.append({"params": [layer.w_quant.scale], "lr": lr / layer.w_quant.qmax})
        if layer.a_quant is not None:
            acts += list(layer.a_quant.parameters())
    if acts:
        out.append({"params": acts, "lr": lr})
    return out


def _floors(groups: dict[str, list[nn.Parameter]]) -> list[tuple[nn.Parameter, torch.Tensor]]:
    """Lower limits for steps and breakpoints: 1% of their initial values.

    Adam's step is absolute, so a small per-channel scale or breakpoint could otherwise be pushed to ~0,
    where x / s overflows and the gradients become NaN. The initial MSE search itself never goes below
    1% of the range either.
    """
    return [(p, p.detach().abs().clone() * _FLOOR) for p in groups["weight_scale"] + groups["breakpoint"]]


def _project(floors: list[tuple[nn.Parameter, torch.Tensor]]) -> None:
    with torch.no_grad():
        for p, floor in floors:
            torch.maximum(p, floor, out=p)


@dataclass
class _Trainer:
    """One finetuning run's state: the parameter groups, optimiser, schedule and floors."""

    model: nn.Module
    layers: dict[str, QuantLayer]
    weights: dict[str, float]
    config: FinetuneConfig
    groups: dict[str, list[nn.Parameter]]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    floors: list[tuple[nn.Parameter, torch.Tensor]]

    @property
    def trainable(self) -> list[nn.Parameter]:
        return [p for g in GROUPS for p in self.groups[g]]


def _start(
    model: nn.Module, layers: dict[str, QuantLayer], weights: dict[str, float], config: FinetuneConfig
) -> tuple[_Trainer, list[tuple[nn.Parameter, bool]]]:
    """Freeze every model parameter that is not a quantizer parameter, build the optimiser.

    Returns the trainer and the (parameter, requires_grad) pairs to restore afterwards.
    """
    groups = parameter_groups(layers)
    every = [p for g in GROUPS for p in groups[g]]
    if not every:
        raise CalibError("finetune: the layers have no quantizer parameters to train")
    trainable = {id(p) for p in every}
    saved = [(p, p.requires_grad) for p in model.parameters() if id(p) not in trainable]
    for p, _ in saved:
        p.requires_grad_(False)
    for layer in layers.values():
        if isinstance(layer.a_quant, DualRegionActQuantizer) and layer.a_quant.budget == "split":
            # s_o must follow the trained bounds rather than stay at its initial value.
            layer.a_quant.use_derived_outlier_scale()
    opt = torch.optim.Adam(_optimizer_groups(layers, config.lr), lr=config.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=config.lr_decay)
    trainer = _Trainer(model, layers, weights, config, groups, opt, sched, _floors(groups))
    return trainer, saved


def _activate(trainer: _Trainer, group: str) -> list[nn.Parameter]:
    """Only `group`'s parameters require gradients (autograd then skips the others' backward)."""
    for p in trainer.trainable:
        p.requires_grad_(False)
    active = trainer.groups[group]
    for p in active:
        p.requires_grad_(True)
    return active


def _fp_targets(trainer: _Trainer, batch: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The exact FP forward (quantization off): each layer's input as L_sen keeps it (`fp_target`:
    normalised rows, or raw rows for the fused kernels) and the SR output."""
    feats: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        set_quant_enabled(trainer.model, False)
        capture_first_inputs(trainer.layers, feats, fp_target)
        out = trainer.model(batch)
    set_quant_enabled(trainer.model, True)
    check_fp_targets(feats)
    return feats, out


def _step(trainer: _Trainer, batch: torch.Tensor, active: list[nn.Parameter]) -> tuple[float, float, float]:
    """One batch: FP targets, the quantized pass, L = L_sen + rec_weight L_rec, an Adam step."""
    fp_feats, out_fp = _fp_targets(trainer, batch)
    q_feats: dict[str, torch.Tensor] = {}
    capture_first_inputs(trainer.layers, q_feats)
    out_q = trainer.model(batch)
    l_rec = (out_q - out_fp).abs().mean()
    l_sen = sensitivity_loss(fp_feats, q_feats, trainer.weights, fp_normalised=fp_is_normalised())
    loss = l_sen + trainer.config.rec_weight * l_rec
    if active:
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        _project(trainer.floors)
    return float(l_sen.detach()), float(l_rec.detach()), float(loss.detach())


def _epoch(trainer: _Trainer, epoch: int, batches: Sequence[torch.Tensor], bar: Any | None) -> EpochLog:
    """Train the epoch's group (cycling by epoch) over every batch; decay the learning rate after it."""
    group = GROUPS[epoch % len(GROUPS)]
    active = _activate(trainer, group)
    lr = trainer.config.lr * trainer.config.lr_decay**epoch
    sums = [0.0, 0.0, 0.0]
    for batch in batches:
        l_sen, l_rec, loss = _step(trainer, batch, active)
        sums = [sums[0] + l_sen, sums[1] + l_rec, sums[2] + loss]
        if bar is not None:
            bar.update(1, epoch=epoch + 1, L_sen=f"{l_sen:.4f}", L_rec=f"{l_rec:.5f}", lr=f"{lr:.2e}")
    trainer.scheduler.step()
    n = len(batches)
    return EpochLog(epoch + 1, group, lr, sums[0] / n, sums[1] / n, sums[2] / n)


def _finish(trainer: _Trainer, saved: list[tuple[nn.Parameter, bool]]) -> None:
    """Hooks off, every requires_grad flag as it was, quantization on."""
    for layer in trainer.layers.values():
        layer.input_hook = None
    for p in trainer.trainable:
        p.requires_grad_(False)
    for p, flag in saved:
        p.requires_grad_(flag)
    set_quant_enabled(trainer.model, True)


def finetune(
    model: nn.Module,
    layers: dict[str, QuantLayer],
    batches: Sequence[torch.Tensor],
    weights: dict[str, float],
    config: FinetuneConfig = FinetuneConfig(),
    progress: ProgressFactory | None = None,
    label: str = "finetune",
) -> FinetuneStats:
    """Train the quantizer parameters of `layers` (in `model`) with L_sen + rec_weight * L_rec.

    Args:
        model: the wrapped model (quantizers already initialised).
        layers: its QuantLayers by name.
        batches: LR batches (N, C, h, w) in [0, 1], in the order they are used every epoch.
        weights: s_k per layer name (SAFT: `saft_weights`; VFT: 1 for every layer).
        config: schedule.
        progress: optional factory `(total, label) -> progress bar`, updated per step with
            epoch, L_sen, L_rec and lr.
        label: the progress bar's label.

    Raises:
        CalibError: no batches, or no quantizer parameter to train.
    """
    if not batches:
        raise CalibError("finetune: no calibration batches")
    trainer, saved = _start(model, layers, weights, config)
    was_training = model.training
    model.eval()  # no batch-norm / dropout updates: only quantizer parameters change
    bar = progress(config.epochs * len(batches), label) if progress is not None else None
    started = time.perf_counter()
    logs: list[EpochLog] = []
    try:
        for epoch in range(config.epochs):
            logs.append(_epoch(trainer, epoch, batches, bar))
    finally:
        _finish(trainer, saved)
        model.train(was_training)
        if bar is not None:
            bar.close()
    steps = config.epochs * len(batches)
    return FinetuneStats(epochs=tuple(logs), steps=steps, seconds=time.perf_counter() - started)
