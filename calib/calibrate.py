"""Post-training quantization of an SR network into a recipe: baselines, dual-region init, SAFT / VFT.

Methods (budget in brackets):

* `minmax`, `percentile`, `mse`, `entropy` [uniform]: TensorRT-style baselines. Activations are signed,
  symmetric, per tensor: scale = amax / (2^(b-1)-1) with amax from the EMA'd min/max, the 99.99th
  percentile of |x|, the MSE-optimal clip, or the KL-divergence threshold (`calib.observers`).
  Weights: symmetric minmax scales (per output channel, or per tensor in `paper` weight mode).
* `drq` [paper | b-bit | split]: dual-region activations initialised from EMA'd min / max and the 99th
  percentile of |x|; weights from the MSE clip search (per channel, or per tensor in `paper` mode).
* `drq+vft`, `drq+saft`: `drq`, then finetuning of the quantizer parameters (`calib.finetune`).
* `drq+adaround`, `drq+gptq` (beyond the paper): `drq`, then the weights' integer codes from learned
  rounding (`calib.adaround`) or GPTQ (`calib.gptq`); `+saft` then finetunes with those codes fixed.
* `mse+gptq` [uniform]: the `mse` baseline with GPTQ weights, the uniform-activation row to compare
  `drq+gptq` with at equal bits.
* `fp8` [fp8]: FP8 E4M3 activations (per tensor, scale = calibration amax / 448) and weights (per output
  channel, amax / 448), `calib.quantizers.fp8`; head, upsampler and tail stay in float
  (`calib.policy.fp8_policy`).

Layer bits come from `calib.policy`: head, upsampler and tail convs at 8 bits (weights and inputs),
layers on globally pooled inputs (channel-attention MLPs) left in FP, the rest at w_bits / a_bits;
`all_layers` quantizes every executed layer at the target bits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from calib.adaround import AdaRoundConfig, adaround
from calib.bbit_format import SignedHistogram, clips_tails, search_bbit_format
from calib.errors import CalibError
from calib.finetune import FinetuneConfig, FinetuneStats, ProgressFactory, finetune, saft_weights
from calib.gptq import GPTQConfig, gptq
from calib.observers import (
    AbsHistogram,
    DualRegionObserver,
    MinMaxObserver,
    chain_hooks,
    dual_region_init,
    entropy_amax,
    entropy_levels,
    mse_amax,
    outlier_channels,
    percentile_amax,
    split_breakpoint_mse,
    weight_scale_minmax,
    weight_scale_mse,
)
from calib.policy import LayerGraph, fp8_policy, policy_bits, probe_layers
from calib.quantizers import (
    DualRegionActQuantizer,
    FP8ActQuantizer,
    FP8WeightQuantizer,
    QuantLayer,
    UniformActQuantizer,
    WeightQuantizer,
    output_channel_axis,
    set_quant_enabled,
    wrap_model,
)
from drq.recipe import (
    BREAKPOINT_INITS,
    BUDGETS,
    DRQ_METHOD_NAMES,
    DUAL_BUDGETS,
    METHODS,
    WEIGHT_MODES,
    Budget,
    CalibrationInfo,
    LayerRecipe,
    Method,
    ModelIdentity,
    Recipe,
    WeightMode,
    searches_bbit_format,
    searches_split_breakpoint,
)

BASELINE_METHODS = ("minmax", "percentile", "mse", "entropy", "mse+gptq")
DRQ_METHODS = DRQ_METHOD_NAMES
SAFT_METHODS = ("drq+saft", "drq+adaround+saft", "drq+gptq+saft")
ADAROUND_METHODS = ("drq+adaround", "drq+adaround+saft")
GPTQ_METHODS = ("drq+gptq", "drq+gptq+saft", "mse+gptq")
UNIFORM_RULE_OF = {"mse+gptq": "mse"}
"""Baselines whose activation steps follow another baseline's rule (they differ only in the weights)."""
PROTECTED_BITS = 8


def _int(value: Any, name: str, low: int, high: int | None = None) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        span = f"{low}..{high}" if high is not None else f">= {low}"
        raise CalibError(f"{name}: must be an integer {span}, got {value!r}")


def _num(value: Any, name: str, low: float, high: float | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CalibError(f"{name}: must be a finite number, got {value!r}")
    if not low < value or (high is not None and value > high):
        raise CalibError(f"{name}: must be in ({low}, {high if high is not None else 'inf'}], got {value!r}")


@dataclass(frozen=True)
class QuantizeConfig:
    """Every option of one PTQ run (the paper's defaults).

    Raises:
        CalibError: an invalid value or a method / budget combination that does not exist.
    """

    method: Method = "drq+saft"
    w_bits: int = 4
    a_bits: int = 4
    budget: Budget = "split"
    weight_mode: WeightMode = "per-channel"
    all_layers: bool = False
    images: int = 100
    crop: int = 96
    batch: int = 2
    epochs: int = 10
    lr: float = 1e-3
    lr_decay: float = 0.9
    rec_weight: float = 5.0
    seed: int = 0
    percentile: float = 99.99
    bp_percentile: float = 99.0
    # "mse" (default): the split breakpoint search, and for b-bit the code split + breakpoint search
    # (`calib.bbit_format`); "percentile" is the paper's rule everywhere (b-bit: schema 1's fixed split).
    breakpoint_init: str = "mse"
    ema_beta: float = 0.9
    source: str = ""
    probe_size: int = 32
    ar_iters: int = 200
    ar_batches: int = 16
    gptq_batches: int = 16
    gptq_damp: float = 0.01
    gptq_target: str = "fp"
    gptq_steps: str = "search"  # "search": GPTQ also tries clipped weight steps (`GPTQConfig.clips`); "keep"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise CalibError(f"method: must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.budget not in BUDGETS:
            raise CalibError(f"budget: must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if self.weight_mode not in WEIGHT_MODES:
            raise CalibError(
                f"weight_mode: must be one of {', '.join(WEIGHT_MODES)}, got {self.weight_mode!r}"
            )
        if self.method in BASELINE_METHODS and self.budget != "uniform":
            raise CalibError(
                f"budget: method {self.method!r} needs the 'uniform' budget, got {self.budget!r}"
            )
        if self.method in DRQ_METHODS and self.budget not in DUAL_BUDGETS:
            raise CalibError(
                f"budget: method {self.method!r} needs one of {', '.join(DUAL_BUDGETS)}, got {self.budget!r}"
            )
        if (self.method == "fp8") != (self.budget == "fp8"):
            raise CalibError(
                f"budget: the fp8 method and the fp8 budget go together, got {self.method!r} "
                f"with {self.budget!r}"
            )
        if self.method == "fp8" and (self.w_bits, self.a_bits) != (8, 8):
            raise CalibError(f"w_bits/a_bits: fp8 is 8 bits, got W{self.w_bits}A{self.a_bits}")
        _int(self.w_bits, "w_bits", 2, 8)
        _int(self.a_bits, "a_bits", 2, 8)
        if self.budget == "b-bit" and self.a_bits < 3:
            raise CalibError(f"a_bits: the b-bit budget needs at least 3 bits, got {self.a_bits}")
        if not isinstance(self.all_layers, bool):
            raise CalibError(f"all_layers: must be true or false, got {self.all_layers!r}")
        _int(self.images, "images", 1)
        _int(self.crop, "crop", 8)
        _int(self.batch, "batch", 1)
        _int(self.epochs, "epochs", 0)
        _int(self.seed, "seed", 0)
        _int(self.probe_size, "probe_size", 8)
        _num(self.percentile, "percentile", 0.0, 100.0)
        _num(self.bp_percentile, "bp_percentile", 0.0, 100.0)
        _num(self.ema_beta, "ema_beta", -1e-12, 1.0)
        if self.breakpoint_init not in BREAKPOINT_INITS:
            raise CalibError(
                f"breakpoint_init: must be one of {', '.join(BREAKPOINT_INITS)}, got {self.breakpoint_init!r}"
            )
        if self.adarounds:
            self.adaround_config()
        if self.gptqs:
            self.gptq_config()
        if self.finetunes:
            FinetuneConfig(self.epochs, self.lr, self.lr_decay, self.rec_weight)

    @property
    def searches_breakpoint(self) -> bool:
        """Whether the split breakpoint comes from the MSE search rather than the percentile."""
        return searches_split_breakpoint(self.method, self.budget, self.breakpoint_init)

    @property
    def searches_bbit_format(self) -> bool:
        """Whether the b-bit code split and breakpoint come from the MSE search."""
        return searches_bbit_format(self.method, self.budget, self.breakpoint_init)

    @property
    def finetunes(self) -> bool:
        return self.method in ("drq+vft", *SAFT_METHODS)

    @property
    def adarounds(self) -> bool:
        """Whether the weights' rounding is learned (`calib.adaround`) before any finetuning."""
        return self.method in ADAROUND_METHODS

    def adaround_config(self) -> AdaRoundConfig:
        return AdaRoundConfig(iters=self.ar_iters, batches=self.ar_batches)

    @property
    def gptqs(self) -> bool:
        """Whether the weights are rounded by GPTQ (`calib.gptq`) before any finetuning."""
        return self.method in GPTQ_METHODS

    def gptq_config(self) -> GPTQConfig:
        if self.gptq_steps not in ("search", "keep"):
            raise CalibError(f"gptq_steps: must be 'search' or 'keep', got {self.gptq_steps!r}")
        clips = GPTQConfig.clips if self.gptq_steps == "search" else ()
        return GPTQConfig(
            batches=self.gptq_batches, damp=self.gptq_damp, target=self.gptq_target, clips=clips
        )

    def finetune_config(self) -> FinetuneConfig:
        return FinetuneConfig(self.epochs, self.lr, self.lr_decay, self.rec_weight)


@dataclass(frozen=True)
class QuantizeStats:
    """What a run measured besides the recipe: layer bits, sensitivities, losses and timings."""

    layer_bits: dict[str, int]
    skipped: tuple[str, ...]
    sensitivity: dict[str, float]
    calibrate_s: float
    finetune: FinetuneStats | None = None
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer_bits": dict(self.layer_bits),
            "skipped": list(self.skipped),
            "sensitivity": dict(self.sensitivity),
            "calibrate_s": self.calibrate_s,
            "finetune": None if self.finetune is None else self.finetune.to_dict(),
            "adaround": self.extra.get("adaround"),
            "gptq": self.extra.get("gptq"),
            "wall_s": self.wall_s,
        }


def make_batches(crops: Sequence[Any], batch: int) -> list[torch.Tensor]:
    """Stack 3 x c x c float32 crops (NumPy or torch) into batches of `batch`, keeping their order.

    Raises:
        CalibError: no crops, or crops of different shapes.
    """
    if not crops:
        raise CalibError("calibration data: no crops")
    tensors = [torch.as_tensor(c, dtype=torch.float32) for c in crops]
    shape = tensors[0].shape
    for i, t in enumerate(tensors):
        if t.shape != shape or t.dim() != 3:
            raise CalibError(
                f"calibration data: crop {i} has shape {tuple(t.shape)}, expected {tuple(shape)} (C, H, W)"
            )
    return [torch.stack(tensors[i : i + batch]) for i in range(0, len(tensors), batch)]


@dataclass
class _Observed:
    minmax: MinMaxObserver
    hist: AbsHistogram | None
    dual: DualRegionObserver | None
    signed: SignedHistogram | None = None


def _observe(
    model: nn.Module,
    layers: dict[str, QuantLayer],
    batches: Sequence[torch.Tensor],
    config: QuantizeConfig,
    progress: ProgressFactory | None,
) -> dict[str, _Observed]:
    rule = UNIFORM_RULE_OF.get(config.method, config.method)
    needs_hist = rule in ("percentile", "mse", "entropy") or config.searches_breakpoint
    needs_dual = config.method in DRQ_METHODS
    observed: dict[str, _Observed] = {}
    for name, layer in layers.items():
        obs = _Observed(
            MinMaxObserver(config.ema_beta),
            AbsHistogram() if needs_hist else None,
            DualRegionObserver(config.bp_percentile, config.ema_beta) if needs_dual else None,
            SignedHistogram() if config.searches_bbit_format else None,
        )
        observed[name] = obs
        hooks = [o.collect for o in (obs.minmax, obs.hist, obs.dual, obs.signed) if o is not None]
        layer.input_hook = chain_hooks(*hooks)
    bar = progress(len(batches), "calibrate") if progress is not None else None
    set_quant_enabled(model, False)
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
                if bar is not None:
                    bar.update(1)
    finally:
        for layer in layers.values():
            layer.input_hook = None
        if bar is not None:
            bar.close()
    missing = [name for name, obs in observed.items() if obs.minmax.batches == 0]
    if missing:
        raise CalibError(f"layer {missing[0]!r}: never ran on the calibration data")
    return observed


def _weight_quantizer(layer: QuantLayer, bits: int, config: QuantizeConfig) -> WeightQuantizer:
    axis = None if config.weight_mode == "paper" else output_channel_axis(layer.layer)
    if config.method == "fp8":
        return FP8WeightQuantizer.from_weight(layer.layer.weight, axis)  # type: ignore[return-value]
    search = weight_scale_mse if config.method in DRQ_METHODS else weight_scale_minmax
    return WeightQuantizer(bits, search(layer.layer.weight, bits, axis), axis)


def _uniform_amax(obs: _Observed, bits: int, config: QuantizeConfig) -> float:
    rule = UNIFORM_RULE_OF.get(config.method, config.method)
    if rule == "minmax":
        return obs.minmax.amax
    assert obs.hist is not None  # created for these methods by _observe
    if obs.hist.width == 0.0:
        return 0.0
    if rule == "percentile":
        return percentile_amax(obs.hist, config.percentile)
    if rule == "mse":
        return mse_amax(obs.hist, bits)
    return entropy_amax(obs.hist, entropy_levels(bits))


def _act_quantizer(
    obs: _Observed, bits: int, config: QuantizeConfig
) -> UniformActQuantizer | DualRegionActQuantizer:
    if config.method in BASELINE_METHODS:
        amax = max(_uniform_amax(obs, bits, config), 1e-8)
        return UniformActQuantizer(bits, amax / (2 ** (bits - 1) - 1), 0, True)
    if config.method == "fp8":  # the true |x| max over every batch (ModelOpt's "max" FP8 calibration)
        assert obs.minmax.channel_absmax is not None
        return FP8ActQuantizer.from_amax(float(obs.minmax.channel_absmax.max()))  # type: ignore[return-value]
    assert obs.dual is not None
    init = dual_region_init(obs.minmax, obs.dual)
    bp = init.breakpoint
    if config.searches_breakpoint and obs.hist is not None and obs.hist.width > 0.0:
        bp = split_breakpoint_mse(obs.hist, init.lower, init.upper, bits, init.breakpoint)
    signed = obs.signed
    if signed is not None and max(signed.pos.width, signed.neg.width) > 0.0:
        clip = clips_tails(config.a_bits)
        fmt = search_bbit_format(signed, bits, init.lower, init.breakpoint, init.upper, clip=clip)
        lower, upper = min(fmt.lower, 0.0), max(fmt.upper, fmt.breakpoint * 1.01)
        return DualRegionActQuantizer("b-bit", bits, lower, fmt.breakpoint, upper, code_split=fmt.code_split)
    return DualRegionActQuantizer(config.budget, bits, init.lower, bp, max(init.upper, bp * 1.01))


@dataclass(frozen=True)
class _Plan:
    """Which layers a run quantizes, at which input and weight bits (`calib.policy`)."""

    graph: LayerGraph
    act_bits: dict[str, int]
    weight_bits: dict[str, int]


def _plan(model: nn.Module, batches: Sequence[torch.Tensor], config: QuantizeConfig) -> _Plan:
    graph = probe_layers(model, config.probe_size, int(batches[0].shape[1]))
    act_bits = policy_bits(graph, config.a_bits, config.all_layers, PROTECTED_BITS)
    if config.method == "fp8":
        act_bits = fp8_policy(graph, config.all_layers)
    weight_bits = policy_bits(graph, config.w_bits, config.all_layers, PROTECTED_BITS)
    return _Plan(graph, act_bits, weight_bits)


def _initialise(
    layers: dict[str, QuantLayer], observed: dict[str, _Observed], plan: _Plan, config: QuantizeConfig
) -> None:
    """Every layer's weight and input quantizer from the calibration statistics."""
    for name, layer in layers.items():
        layer.w_quant = _weight_quantizer(layer, plan.weight_bits[name], config)
        layer.a_quant = _act_quantizer(observed[name], plan.act_bits[name], config)


def _refine(
    model: nn.Module,
    layers: dict[str, QuantLayer],
    batches: list[torch.Tensor],
    stds: dict[str, float],
    config: QuantizeConfig,
    progress: ProgressFactory | None,
) -> tuple[dict[str, float], FinetuneStats | None, dict[str, Any]]:
    """Learned or GPTQ weight rounding and SAFT / VFT where the method asks for them: (s_k, stats)."""
    extra: dict[str, Any] = {}
    if config.adarounds:
        extra["adaround"] = adaround(model, layers, batches, config.adaround_config(), progress).to_dict()
    if config.gptqs:
        extra["gptq"] = gptq(model, layers, batches, config.gptq_config(), progress).to_dict()
    if not config.finetunes:
        return {}, None, extra
    sensitivity = saft_weights(stds) if config.method in SAFT_METHODS else {name: 1.0 for name in layers}
    stats = finetune(
        model, layers, batches, sensitivity, config.finetune_config(), progress, label=config.method
    )
    return sensitivity, stats, extra


def _layer_entries(layers: dict[str, QuantLayer], observed: dict[str, _Observed]) -> dict[str, LayerRecipe]:
    """Recipe entries; dual-region layers also list the input channels that reach the outlier region."""
    entries: dict[str, LayerRecipe] = {}
    for name, layer in layers.items():
        chans = None
        if isinstance(layer.a_quant, DualRegionActQuantizer):
            bp = float(layer.a_quant.bounds()[1].detach())
            chans = outlier_channels(observed[name].minmax.channel_absmax, bp)
        entries[name] = layer.to_recipe(chans)
    return entries


def _recipe(
    identity: ModelIdentity,
    config: QuantizeConfig,
    batches: list[torch.Tensor],
    entries: dict[str, LayerRecipe],
    wall: float,
) -> Recipe:
    return Recipe(
        model=identity,
        method=config.method,
        w_bits=config.w_bits,
        a_bits=config.a_bits,
        budget=config.budget,
        weight_mode=config.weight_mode,
        calibration=CalibrationInfo(
            images=sum(int(b.shape[0]) for b in batches),
            crop=int(batches[0].shape[-1]),
            seed=config.seed,
            source=config.source,
            epochs=config.epochs if config.finetunes else 0,
            wall_s=round(wall, 3),
        ),
        layers=entries,
    )


def quantize(
    model: nn.Module,
    identity: ModelIdentity,
    calib_batches: Sequence[torch.Tensor],
    config: QuantizeConfig,
    progress: ProgressFactory | None = None,
) -> tuple[Recipe, QuantizeStats]:
    """Quantize `model` in place (its layers become QuantLayers) and return the recipe.

    Args:
        model: FP SR network taking and returning [0, 1] NCHW float32 images.
        identity: the model identity written to the recipe (arch, scale, checkpoint hash and path).
        calib_batches: LR batches (N, 3, h, w) in [0, 1] (`make_batches`), used in this order.
        config: method, bits, budget and schedule.
        progress: optional factory `(total, label) -> bar` with `update(n=1, **postfix)` / `close()`.

    Raises:
        CalibError: no calibration data, a layer never runs on it, or the model has no layer to quantize.
    """
    if not isinstance(identity, ModelIdentity):
        raise CalibError(f"identity: expected a drq.recipe.ModelIdentity, got {type(identity).__name__}")
    started = time.perf_counter()
    batches = list(calib_batches)
    if not batches:
        raise CalibError("calibration data: no batches")
    torch.manual_seed(config.seed)
    model.eval()
    plan = _plan(model, batches, config)
    layers = wrap_model(model, list(plan.act_bits))
    observed = _observe(model, layers, batches, config, progress)
    _initialise(layers, observed, plan, config)
    set_quant_enabled(model, True)
    calibrate_s = time.perf_counter() - started
    stds = {name: obs.minmax.mean_std for name, obs in observed.items()}
    sensitivity, ft_stats, refine_extra = _refine(model, layers, batches, stds, config, progress)
    entries = _layer_entries(layers, observed)
    wall = time.perf_counter() - started
    stats = QuantizeStats(
        layer_bits={n: plan.act_bits[n] for n in layers},
        skipped=plan.graph.skipped + tuple(n for n in plan.graph.executed if n not in layers),
        sensitivity=sensitivity,
        calibrate_s=calibrate_s,
        finetune=ft_stats,
        wall_s=wall,
        extra={"mean_std": stds, "weight_bits": plan.weight_bits, **refine_extra},
    )
    return _recipe(identity, config, batches, entries, wall), stats
