"""Second-order weight rounding (GPTQ, Frantar et al. ICLR 2023), layer by layer on the unlabeled crops.

Beyond the paper's method (which trains quantizer parameters only): the measured cause of the W4A4 gap
is the 4-bit weights. Rounding each weight to nearest minimises each weight's own error, not the layer's
output error. For a layer with weight matrix W (output channels x K inputs; K = Cin kh kw for a conv, in
unfold order) and the inputs X it sees in the quantized model (its own input quantizer applied), GPTQ
quantizes one input column at a time and moves that column's rounding error onto the columns not yet
quantized, weighted by the inverse of H = X X^T:

* columns in descending order of diag(H) ("act order"), H damped by `damp` x mean(diag(H));
* per column j: codes q_j = clamp(round(w_j / s), -Q, Q) with the layer's fixed per-channel steps s
  (the MSE search of `calib.calibrate`), error e_j = (w_j - q_j s) / U_jj, and
  W[:, j+1:] -= e_j U_j,j+1: (U the upper Cholesky factor of H^-1), in blocks of `block` columns;
* GPTQ runs once for the initial steps and once for each clip candidate s = ratio x max|w| / Q; per
  output channel (rows are independent given H) the steps and codes with the lowest output error win;
* the result is kept only where it lowers the layer's output error below that of nearest rounding with
  the initial steps (it always should; the check guards a badly conditioned H).

Layers run in execution order: each one's H comes from the model quantized so far (earlier layers
already on their GPTQ codes), so later layers see, and absorb, the earlier layers' errors. Each block's
(top-level child's, or a top-level Sequential's element's) inputs are computed once; its layers are
measured by running the block alone, stopped at the layer being measured. The codes go into the recipe
(`WeightQuant.codes`), as for learned rounding, so every lowering exports them. Grouped convolutions,
transposed convolutions and non-zero padding modes keep nearest rounding (listed in the stats as
skipped).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from calib.adaround import StopForward, block_io, first_run_order, model_blocks
from calib.errors import CalibError
from calib.quantizers import QuantLayer, WeightQuantizer, capture_first_inputs, set_quant_enabled
from calib.quantizers.uniform import positive_scale

GPTQ_TARGETS = ("fp", "quantized")


@dataclass(frozen=True)
class GPTQConfig:
    """How the layer Hessians are gathered and the rounding is run."""

    batches: int = 16  # calibration batches the Hessians are gathered on (the first ones)
    damp: float = 0.01  # fraction of mean(diag(H)) added to the diagonal
    block: int = 128  # columns updated together (lazy batch updates; the result does not depend on it)
    # "fp": round towards the FP layer's output on the FP model's input (absorbs the input's quantization
    # error); "quantized": towards the FP weights on the quantized input (plain GPTQ)
    target: str = "fp"
    # Steps tried besides the initial (MSE-searched) ones, as fractions of each channel's max |w|; GPTQ
    # runs for each and the lowest output error wins per channel. () keeps the initial steps.
    clips: tuple[float, ...] = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7)

    def __post_init__(self) -> None:
        for name in ("batches", "block"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CalibError(f"gptq {name}: must be a positive integer, got {value!r}")
        if not (isinstance(self.damp, (int, float)) and math.isfinite(self.damp) and 0 < self.damp < 1):
            raise CalibError(f"gptq damp: must be in (0, 1), got {self.damp!r}")
        if not all(isinstance(r, (int, float)) and 0 < r <= 1 for r in self.clips):
            raise CalibError(f"gptq clips: must be fractions in (0, 1], got {self.clips!r}")
        if self.target not in GPTQ_TARGETS:
            raise CalibError(f"gptq target: must be one of {', '.join(GPTQ_TARGETS)}, got {self.target!r}")


@dataclass(frozen=True)
class LayerLog:
    layer: str
    columns: int
    err_nearest: float  # `output_error` with nearest rounding at the initial steps
    err_gptq: float  # `output_error` with the chosen codes and steps
    changed: float  # fraction of weights whose code differs from round-to-nearest with the initial steps
    restepped: float  # fraction of channels whose step is one of the clip candidates
    kept: bool = True


@dataclass(frozen=True)
class GPTQStats:
    layers: tuple[LayerLog, ...] = field(default_factory=tuple)
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "skipped": list(self.skipped),
            "layers": [vars(log).copy() for log in self.layers],
        }


def supports(layer: QuantLayer) -> bool:
    """Whether GPTQ can run on `layer`: an integer weight quantizer on a dense conv or linear layer."""
    if type(layer.w_quant) is not WeightQuantizer:
        return False
    if layer.op == "linear":
        return True
    conv = layer.layer
    return (
        layer.op == "conv2d"
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


def input_columns(layer: QuantLayer, x: torch.Tensor) -> torch.Tensor:
    """The layer's (already quantized) input as a (samples, K) matrix matching weight.reshape(C, K)."""
    if layer.op == "linear":
        return x.reshape(-1, x.shape[-1])
    conv = layer.layer
    cols = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)  # (N, K, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


@dataclass
class LayerStatistics:
    """Second moments of one layer's inputs over the calibration batches (float64, K x K).

    `quantized` = sum X~^T X~ of the input the weights see in the quantized model (its input quantizer
    applied); with the FP target also `cross` = sum X^T X~ and `fp` = sum X^T X, X the FP model's input.
    """

    quantized: torch.Tensor
    rows: int
    cross: torch.Tensor | None = None
    fp: torch.Tensor | None = None


def _layer_input(
    model: nn.Module, layer: QuantLayer, batch: torch.Tensor, quantized: bool
) -> torch.Tensor | None:
    """The layer's input columns in the quantized model (input quantizer applied) or the FP model."""
    seen: list[torch.Tensor] = []

    def hook(x: torch.Tensor) -> None:
        x = x.float()
        if quantized and layer.a_quant is not None:
            x = layer.a_quant(x)
        seen.append(input_columns(layer, x))
        raise StopForward

    layer.input_hook = hook
    set_quant_enabled(model, quantized)
    try:
        with torch.no_grad():
            model(batch)
    except StopForward:
        pass
    finally:
        layer.input_hook = None
        set_quant_enabled(model, True)
    return seen[0] if seen else None


def _accumulate(total: torch.Tensor | None, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    part = (a.T @ b).double()
    return part if total is None else total + part


def capture_fp_inputs(
    runner: nn.Module, layers: dict[str, QuantLayer], inputs: Sequence[torch.Tensor]
) -> dict[str, list[torch.Tensor]] | None:
    """Each of `layers`' raw FP input (its first call) per batch, from one FP pass of `runner` per batch
    (the FP model does not change while the weights are rounded); None when one of them does not run."""
    seen: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    set_quant_enabled(runner, False)
    try:
        for batch in inputs:
            store: dict[str, torch.Tensor] = {}
            capture_first_inputs(layers, store, lambda x: x.float())
            with torch.no_grad():
                runner(batch)
            for name, x in store.items():
                seen[name].append(x)
    finally:
        for layer in layers.values():
            layer.input_hook = None
        set_quant_enabled(runner, True)
    return seen if all(len(v) == len(inputs) for v in seen.values()) else None


def layer_statistics(
    runner: nn.Module,
    layer: QuantLayer,
    inputs: Sequence[torch.Tensor],
    fp_inputs: Sequence[torch.Tensor] | None,
    fp_layer_inputs: Sequence[torch.Tensor] | None = None,
) -> LayerStatistics | None:
    """The layer's input moments, running `runner` (the model, or the block holding the layer) on
    `inputs` (quantized) and, for the FP target, either taking the layer's own FP inputs
    (`fp_layer_inputs`) or running `runner` on `fp_inputs` with quantization off. A layer that runs
    more than once per forward pass contributes its first input. None when the layer does not run on
    some batch."""
    quantized = cross = fp = None
    rows = 0
    for i, batch in enumerate(inputs):
        xq = _layer_input(runner, layer, batch, True)
        if xq is None:
            return None
        quantized = _accumulate(quantized, xq, xq)
        rows += xq.shape[0]
        if fp_layer_inputs is None and fp_inputs is None:
            continue
        x = (
            input_columns(layer, fp_layer_inputs[i])
            if fp_layer_inputs is not None
            else _layer_input(runner, layer, fp_inputs[i], False)  # type: ignore[index]
        )
        if x is None or x.shape != xq.shape:
            return None
        cross, fp = _accumulate(cross, x, xq), _accumulate(fp, x, x)
    assert quantized is not None
    return LayerStatistics(quantized, rows, cross, fp)


def row_errors(stats: LayerStatistics, weight: torch.Tensor, w_hat: torch.Tensor) -> torch.Tensor:
    """Summed squared output error of each output channel (row) of the layer with weights `w_hat` (C x K,
    float64): against the FP weights on the same quantized input, or, with the FP target, against the FP
    layer on the FP model's input: ||X w^T - X~ w_hat^T||^2 = w H w^T - 2 w C w_hat^T + w_hat H~ w_hat^T.
    """
    if stats.cross is None or stats.fp is None:
        delta = weight - w_hat
        return ((delta @ stats.quantized) * delta).sum(1)
    return (
        ((weight @ stats.fp) * weight).sum(1)
        - 2.0 * ((weight @ stats.cross) * w_hat).sum(1)
        + ((w_hat @ stats.quantized) * w_hat).sum(1)
    )


def output_error(stats: LayerStatistics, weight: torch.Tensor, w_hat: torch.Tensor) -> float:
    """Mean squared output error per calibration row (`row_errors` summed over channels)."""
    return float(row_errors(stats, weight, w_hat).sum()) / max(1, stats.rows)


def target_weight(stats: LayerStatistics, weight: torch.Tensor, damp: float) -> torch.Tensor:
    """The float weights GPTQ rounds towards: W itself, or with the FP target the least-squares
    W* = W C (H~ + damp I)^-1, for which ||X W^T - X~ Q^T||^2 = ||Q - W*||^2_H~ + constant."""
    if stats.cross is None:
        return weight
    return torch.linalg.solve(_damped(stats.quantized, damp), (weight @ stats.cross).T).T  # H~ symmetric


def _damped(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """H + damp mean(diag H) I, as a new tensor."""
    h = hessian.clone()
    h.diagonal().add_(damp * float(h.diagonal().mean()))
    return h


def _upper_inverse_factor(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """U with U^T U = (H + damp mean(diag H) I)^-1, U upper triangular (float64)."""
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(_damped(hessian, damp)))
    return torch.linalg.cholesky(inverse, upper=True)


def gptq_codes(
    weight: torch.Tensor, step: torch.Tensor, qmax: int, hessian: torch.Tensor, config: GPTQConfig
) -> torch.Tensor:
    """Integer codes (float64, C x K) for weight (C x K) with per-row steps `step` (C,), given H (K x K).

    Columns whose input never varies (diag(H) = 0) carry no signal: they are rounded to nearest.
    """
    w = weight.double().clone()
    s = step.double().reshape(-1, 1)
    h = hessian.clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    order = torch.argsort(h.diagonal(), descending=True, stable=True)
    w, h = w[:, order], h[order][:, order]
    u = _upper_inverse_factor(h, config.damp)
    codes = torch.zeros_like(w)
    k = w.shape[1]
    for start in range(0, k, config.block):
        end = min(start + config.block, k)
        errors = torch.zeros(w.shape[0], end - start, dtype=w.dtype)
        for j in range(start, end):
            col = w[:, j]
            q = torch.clamp(torch.round(col / s[:, 0]), -qmax, qmax)
            codes[:, j] = q
            err = (col - q * s[:, 0]) / u[j, j]
            w[:, j:end] -= err.unsqueeze(1) * u[j, j:end].unsqueeze(0)
            errors[:, j - start] = err
        w[:, end:] -= errors @ u[start:end, end:]
    restored = torch.empty_like(codes)
    restored[:, order] = codes
    return restored


def candidate_steps(quantizer: WeightQuantizer, matrix: torch.Tensor, clips: Sequence[float]) -> torch.Tensor:
    """(1 + len(clips)) x C float32 steps: the quantizer's own, then max|w| / Q x each clip ratio (per
    channel, or per tensor when the quantizer has one scale)."""
    own = positive_scale(quantizer.scale.detach()).float().expand(matrix.shape[0])
    absmax = (
        matrix.abs().amax(1) if quantizer.axis is not None else matrix.abs().amax().expand(matrix.shape[0])
    )
    base = torch.clamp(absmax.float(), min=float(torch.finfo(torch.float32).tiny)) / quantizer.qmax
    return torch.stack([own, *[(base * float(r)).float() for r in clips]])


def _round_layer(name: str, layer: QuantLayer, stats: LayerStatistics, config: GPTQConfig) -> LayerLog:
    """GPTQ one layer for every candidate step; keep per channel (or per tensor) the step and codes with
    the lowest output error, or the layer's own steps at nearest rounding when nothing beats them."""
    quantizer: WeightQuantizer = layer.w_quant  # type: ignore[assignment]
    weight = layer.layer.weight.detach().float()
    matrix = weight.reshape(weight.shape[0], -1).double()
    qmax = quantizer.qmax
    with torch.no_grad():
        steps = candidate_steps(quantizer, matrix, config.clips)  # R x C
        r, c = steps.shape
        target = target_weight(stats, matrix, config.damp).repeat(r, 1)
        flat_steps = steps.reshape(-1).double()
        codes = gptq_codes(target, flat_steps, qmax, stats.quantized, config).reshape(r, c, -1)
        errors = row_errors(stats, matrix.repeat(r, 1), codes.reshape(r * c, -1) * flat_steps[:, None])
        errors = errors.reshape(r, c)
        nearest = torch.clamp(torch.round(matrix / steps[0].double()[:, None]), -qmax, qmax)
        err_nearest = row_errors(stats, matrix, nearest * steps[0].double()[:, None])
        pick = errors.argmin(0) if quantizer.axis is not None else errors.sum(1).argmin().expand(c)
    chosen_err = errors.gather(0, pick[None]).reshape(-1)
    kept = float(chosen_err.sum()) < float(err_nearest.sum())
    if kept:
        chosen = codes[pick, torch.arange(c)]
        step = steps[pick, torch.arange(c)]
        with torch.no_grad():
            quantizer.scale.copy_(step if quantizer.axis is not None else step[:1])
    else:
        chosen, chosen_err = nearest, err_nearest
    quantizer.set_codes(chosen.reshape(weight.shape))
    rows = max(1, stats.rows)
    return LayerLog(
        name,
        matrix.shape[1],
        float(err_nearest.sum()) / rows,
        float(chosen_err.sum()) / rows,
        float((chosen != nearest).double().mean()),
        float((pick != 0).double().mean()) if kept else 0.0,
        kept,
    )


def gptq(
    model: nn.Module,
    layers: dict[str, QuantLayer],
    batches: Sequence[torch.Tensor],
    config: GPTQConfig = GPTQConfig(),
    progress: Any | None = None,
) -> GPTQStats:
    """GPTQ-round every supported integer-weight QuantLayer of `model`, in execution order.

    The weight scales stay as they are; each rounded layer's WeightQuantizer ends with fixed codes.
    Each block's (top-level child's, or a top-level Sequential's element's) quantized and FP inputs are
    computed once; its layers are then measured by running the block alone (the whole model for a block
    taking several tensors or running twice).

    Raises:
        CalibError: no batches.
    """
    if not batches:
        raise CalibError("gptq: no calibration batches")
    started = time.perf_counter()
    data = list(batches)[: config.batches]
    model.eval()
    set_quant_enabled(model, True)
    order = first_run_order(model, layers, data[0])
    bar = progress(len(order), "gptq") if progress is not None else None
    logs: list[LayerLog] = []
    skipped: list[str] = [name for name in layers if name not in order]
    try:
        for _, block in model_blocks(model, layers, data[0], expand_sequential=True):
            runner, inputs, fp_inputs = _block_inputs(model, block, data, config.target == "fp")
            inside = {id(m) for m in block.modules()}
            names = [n for n in order if id(layers[n]) in inside]
            own_fp = (
                capture_fp_inputs(block, {n: layers[n] for n in names}, fp_inputs)
                if runner is block and fp_inputs is not None
                else None
            )
            for name in names:
                layer = layers[name]
                fp_layer = own_fp[name] if own_fp is not None else None
                stats = (
                    layer_statistics(runner, layer, inputs, fp_inputs, fp_layer) if supports(layer) else None
                )
                if stats is None:
                    skipped.append(name)
                else:
                    logs.append(_round_layer(name, layer, stats, config))
                if bar is not None:
                    bar.update(1)
    finally:
        set_quant_enabled(model, True)
        if bar is not None:
            bar.close()
    return GPTQStats(tuple(logs), tuple(skipped), time.perf_counter() - started)


def _block_inputs(
    model: nn.Module, block: nn.Module, data: list[torch.Tensor], fp_target: bool
) -> tuple[nn.Module, list[torch.Tensor], list[torch.Tensor] | None]:
    """(what to run, its quantized inputs, its FP inputs or None): the block on its cached inputs from
    the model quantized so far and the FP model, or the whole model on the batches."""
    quantized = block_io(model, block, data, True, "input")
    fp = block_io(model, block, data, False, "input") if fp_target else None
    if quantized is None or (fp_target and fp is None):
        return model, data, (data if fp_target else None)
    return block, quantized, fp
