"""The `mixed` budget: per conv input, uniform INT8, dual-region `split` or FP16, at the least cost.

Quality is checked without labels. The proxy is the Y-channel PSNR between the FP model's and the
quantized model's SR outputs on calibration crops that did not fit the quantizers (a held-out split of
the calibration images), border `scale` removed as the benchmarks do. It becomes a predicted PSNR drop
through the additive-noise model: an output error of mean square e_q, independent of the FP model's own
error e_fp, lowers PSNR against the ground truth by

    drop = 10 log10(1 + e_q / e_fp),   e_fp = 255^2 10^(-ref_psnr / 10)

with `ref_psnr_db` the FP model's PSNR on the benchmark that matters most (the highest one loses the most
for the same e_q: x4 models score about 32 dB on Set5). `results/int8/README.md` states the measured
mapping from this prediction to benchmark drops.

Cost model (`LayerCost`, printed by `format_costs`): per conv, MACs at the reference LR size; `int8`
runs them once in INT8, `split` twice (its outlier conv counts in full), `fp16` once in FP16. The plan
minimises INT8 MACs + `fp16_mac_cost` x FP16 MACs (default 2: dense tensor-core INT8 peak is twice FP16's
on NVIDIA GPUs since Turing); bytes moved (input and weights read, output written: 1 byte per INT8
element, 2 per FP16 element, a split reads its input twice) are reported alongside.

Search (greedy, every step measured on the proxy):

1. int8 variant per layer: symmetric with the MSE clip of the |x| histogram; for inputs bounded below
   (observed min >= -10% of the max: the image, ReLU / sigmoid / LeakyReLU outputs) a shifted grid
   (a zero point: codes cover [min, clip] instead of wasting the negative half; the TensorRT form folds
   the shift into the conv bias, exactly); for split layers whose calibrated outlier branch is empty,
   the split's own dense grid (the branch dropped). Each layer keeps the variant with the best proxy.
2. Start all-int8; measure each layer's gain (proxy MSE removed) when it alone becomes split, or fp16.
3. Upgrade layers by gain per unit of cost until the predicted drop meets `max_drop_db`, re-measuring
   the whole plan after every step; then downgrade any upgraded layer the target does not need.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from calib.errors import CalibError
from calib.observers import AbsHistogram, mse_amax
from calib.quantizers import DualRegionActQuantizer, QuantLayer, UniformActQuantizer
from drq.recipe import DualRegionAct, LayerRecipe, Recipe

FORMS = ("int8", "split", "fp16")
_Y = (65.481, 128.553, 24.966)  # BT.601 luma of RGB in [0, 1], as drq.imaging.metrics.rgb_to_y
_BOUNDED_RATIO = 0.1  # an input is "bounded below" when min >= -10% of its max


@dataclass(frozen=True)
class PlanConfig:
    """Options of the mixed-plan search (see module docstring).

    Raises:
        CalibError: a value out of range.
    """

    max_drop_db: float = 0.05
    ref_psnr_db: float = 32.0
    fp16_mac_cost: float = 2.0
    shift: bool = True
    drop_empty_branch: bool = True
    allow_fp16: bool = True
    cost_lr_size: int = 256

    def __post_init__(self) -> None:
        for name in ("max_drop_db", "ref_psnr_db", "fp16_mac_cost"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise CalibError(f"{name}: must be a finite number, got {value!r}")
            if value <= 0:
                raise CalibError(f"{name}: must be > 0, got {value!r}")
        if (
            isinstance(self.cost_lr_size, bool)
            or not isinstance(self.cost_lr_size, int)
            or self.cost_lr_size < 8
        ):
            raise CalibError(f"cost_lr_size: must be an integer >= 8, got {self.cost_lr_size!r}")


@dataclass(frozen=True)
class LayerCost:
    """One conv at the reference LR size: MACs and tensor sizes (elements)."""

    macs: int
    in_elems: int
    out_elems: int
    weight_elems: int

    def of(self, form: str) -> dict[str, int]:
        """INT8 MACs, FP16 MACs and bytes moved when the conv runs as `form`."""
        if form == "fp16":
            return {
                "int8_macs": 0,
                "fp16_macs": self.macs,
                "bytes": 2 * (self.in_elems + self.weight_elems) + 2 * self.out_elems,
            }
        convs = 2 if form == "split" else 1
        return {
            "int8_macs": convs * self.macs,
            "fp16_macs": 0,
            "bytes": convs * (self.in_elems + self.weight_elems) + 2 * self.out_elems,
        }


def layer_costs(
    model: nn.Module, layers: dict[str, QuantLayer], lr_size: int, channels: int = 3
) -> dict[str, LayerCost]:
    """MACs and tensor sizes of every layer on one `lr_size` x `lr_size` input (one float forward)."""
    seen: dict[str, LayerCost] = {}

    def hook_for(name: str) -> Callable[..., None]:
        def hook(module: QuantLayer, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            w = module.layer.weight
            per_out = (
                int(w[0].numel()) if module.op != "conv_transpose2d" else int(w.shape[0] * w[0, 0].numel())
            )
            out = int(output.numel())
            macs = (
                out * per_out
                if module.op != "conv_transpose2d"
                else int(inputs[0].numel()) * int(w[0].numel())
            )
            seen.setdefault(name, LayerCost(macs, int(inputs[0].numel()), out, int(w.numel())))

        return hook

    handles = [layer.register_forward_hook(hook_for(name)) for name, layer in layers.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, channels, lr_size, lr_size))
    finally:
        for handle in handles:
            handle.remove()
    missing = [n for n in layers if n not in seen]
    if missing:
        raise CalibError(f"layer {missing[0]!r}: did not run on the cost probe")
    return seen


def plan_totals(plan: dict[str, str], costs: dict[str, LayerCost], fp16_mac_cost: float) -> dict[str, float]:
    """Summed INT8 / FP16 MACs, bytes, and the weighted cost relative to all-int8 (`vs_int8`)."""
    total = {"int8_macs": 0, "fp16_macs": 0, "bytes": 0}
    for name, form in plan.items():
        for key, value in costs[name].of(form).items():
            total[key] += value
    uniform = sum(c.macs for c in costs.values())
    weighted = total["int8_macs"] + fp16_mac_cost * total["fp16_macs"]
    return {
        **total,
        "weighted": weighted,
        "vs_int8": weighted / uniform,
        "macs_vs_int8": (total["int8_macs"] + total["fp16_macs"]) / uniform,
    }


def format_costs(
    plan: dict[str, str], costs: dict[str, LayerCost], fp16_mac_cost: float, lr_size: int
) -> str:
    """The cost table of a plan (one line per layer that is not plain int8, then the totals)."""
    lines = [
        f"cost model at LR {lr_size}x{lr_size}: int8 = 1 INT8 conv, split = 2, fp16 = 1 FP16 conv "
        f"(weighted x{fp16_mac_cost:g}); bytes = inputs + weights read, outputs written"
    ]
    for name, form in plan.items():
        if form != "int8":
            c = costs[name].of(form)
            lines.append(
                f"  {name:<28} {form:<5} int8 {c['int8_macs'] / 1e6:8.1f} M  "
                f"fp16 {c['fp16_macs'] / 1e6:8.1f} M"
            )
    t = plan_totals(plan, costs, fp16_mac_cost)
    counts = {f: sum(1 for v in plan.values() if v == f) for f in FORMS}
    lines.append(
        f"  total: {counts['int8']} int8, {counts['split']} split, {counts['fp16']} fp16; INT8 MACs "
        f"{t['int8_macs'] / 1e9:.3f} G, FP16 MACs {t['fp16_macs'] / 1e9:.3f} G, {t['bytes'] / 2**20:.1f} MiB "
        f"moved; weighted cost {t['vs_int8']:.3f}x uniform INT8 (MACs {t['macs_vs_int8']:.3f}x)"
    )
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# int8 candidates


@dataclass
class _InputStats:
    hist: AbsHistogram = field(default_factory=AbsHistogram)
    lo: float = math.inf
    hi: float = -math.inf
    uint8_lattice: bool = True  # every value is k / 255 in [0, 1]: the image itself

    def collect(self, x: torch.Tensor) -> None:
        self.hist.collect(x)
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))
        if self.uint8_lattice:
            k = x.detach().double() * 255.0
            self.uint8_lattice = bool(((k - k.round()).abs().max() < 1e-3) and self.lo >= 0 and self.hi <= 1)


def observe_inputs(
    model: nn.Module, layers: dict[str, QuantLayer], batches: Sequence[torch.Tensor]
) -> dict[str, _InputStats]:
    """|x| histogram and true min / max of every layer input on the FP model."""
    stats = {name: _InputStats() for name in layers}
    for name, layer in layers.items():
        layer.input_hook = stats[name].collect
        layer.quant_enabled = False
    try:
        with torch.no_grad():
            for batch in batches:
                model(batch)
    finally:
        for layer in layers.values():
            layer.input_hook = None
            layer.quant_enabled = True
    return stats


def symmetric_int8(stats: _InputStats) -> UniformActQuantizer:
    """Signed symmetric INT8 with the MSE-optimal clip of the |x| histogram."""
    amax = max(mse_amax(stats.hist, 8), 1e-8)
    return UniformActQuantizer(8, amax / 127.0, 0, True)


def shifted_int8(stats: _InputStats, minmax: bool = False) -> UniformActQuantizer | None:
    """INT8 whose 256 codes span [min, clip] (zero point -128 - round(min / s)); None unless bounded below.

    The clip is the MSE-optimal threshold of a 255-step grid on |x| (9-bit symmetric = 8-bit one-sided),
    or with `minmax` the observed max. An input whose values all lie on the uint8 lattice k / 255 (the
    LR image fed to the head conv) gets s = 1/255, z = -128 with `minmax`: its quantization is lossless.
    """
    if minmax and stats.uint8_lattice:
        return UniformActQuantizer(8, 1.0 / 255.0, -128, True)  # the image: exactly its uint8 values
    lower = min(stats.lo, 0.0)
    if stats.hi <= 0 or lower < -_BOUNDED_RATIO * stats.hi:
        return None
    upper = stats.hi if minmax else max(mse_amax(stats.hist, 9), 1e-8)
    scale = (upper - lower) / 255.0
    zero_point = int(max(-128, min(127, -128 - round(lower / scale))))
    return UniformActQuantizer(8, scale, zero_point, True)


def dense_int8(act: DualRegionAct) -> UniformActQuantizer:
    """The split budget's dense grid alone (s_d = bp / 127): the split with its outlier branch dropped."""
    from drq.grids import split_grid

    return UniformActQuantizer(8, float(split_grid(act).s_d), 0, True)


# ---------------------------------------------------------------------------------------------------
# the proxy


class ProxyEvaluator:
    """Y-PSNR between FP and quantized outputs on held-out crops, for any per-layer assignment."""

    def __init__(
        self, model: nn.Module, layers: dict[str, QuantLayer], held_out: torch.Tensor, scale: int
    ) -> None:
        self.model = model
        self.layers = layers
        self.held_out = held_out
        self.border = scale
        self.evaluations = 0
        for layer in layers.values():
            layer.quant_enabled = False
        self.fp_y = self._luma(self._run())

    def _run(self) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.held_out).clamp(0.0, 1.0)

    def _luma(self, sr: torch.Tensor) -> torch.Tensor:
        w = torch.tensor(_Y, dtype=torch.float64).reshape(1, 3, 1, 1)
        y = (sr.double() * w).sum(dim=1)
        b = self.border
        return y[:, b:-b, b:-b] if b else y

    def mse(self, assignment: dict[str, tuple[str, nn.Module | None]]) -> float:
        """Mean squared Y error (0..255 scale) of the model quantized as `assignment` says."""
        for name, (form, quant) in assignment.items():
            layer = self.layers[name]
            layer.quant_enabled = form != "fp16"
            if quant is not None:
                layer.a_quant = quant
        self.evaluations += 1
        return float(((self._luma(self._run()) - self.fp_y) ** 2).mean())


def predicted_drop_db(mse: float, ref_psnr_db: float) -> float:
    """PSNR drop against the ground truth of an independent output error `mse` (module docstring)."""
    e_fp = 255.0**2 * 10.0 ** (-ref_psnr_db / 10.0)
    return 10.0 * math.log10(1.0 + mse / e_fp)


def proxy_psnr_db(mse: float) -> float:
    return math.inf if mse <= 0 else 10.0 * math.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------------------------------
# the search


@dataclass(frozen=True)
class PlanResult:
    """The chosen plan, the recipe that carries it, and what the search measured."""

    recipe: Recipe
    plan: dict[str, str]
    costs: dict[str, LayerCost]
    report: dict[str, Any]
    cost_table: str
    all_int8: Recipe | None = None  # every layer in its best int8 variant (for ablations)


@dataclass
class _Search:
    proxy: ProxyEvaluator
    split: dict[str, DualRegionActQuantizer]
    int8: dict[str, UniformActQuantizer]
    costs: dict[str, LayerCost]
    config: PlanConfig
    steps: list[dict[str, Any]] = field(default_factory=list)

    def assignment(self, plan: dict[str, str]) -> dict[str, tuple[str, nn.Module | None]]:
        quant = {"int8": self.int8, "split": self.split}
        return {n: (f, quant[f][n] if f in quant else None) for n, f in plan.items()}

    def mse(self, plan: dict[str, str]) -> float:
        return self.proxy.mse(self.assignment(plan))

    def drop(self, mse: float) -> float:
        return predicted_drop_db(mse, self.config.ref_psnr_db)

    def extra_cost(self, name: str, form: str) -> float:
        c = self.costs[name]
        return c.macs if form == "split" else (self.config.fp16_mac_cost - 1.0) * c.macs


def _choose_int8_variants(
    search: _Search, stats: dict[str, _InputStats], split_acts: dict[str, DualRegionAct]
) -> dict[str, str]:
    """Per layer, the int8 variant (mse / shift / dense) with the best proxy, each tried alone."""
    names = list(search.split)
    base_plan = dict.fromkeys(names, "int8")
    base = search.mse(base_plan)
    chosen = dict.fromkeys(names, "mse")
    for name in names:
        options: dict[str, UniformActQuantizer] = {}
        if search.config.shift and (q := shifted_int8(stats[name])) is not None:
            options["shift"] = q
            options["shift-minmax"] = shifted_int8(stats[name], minmax=True)  # type: ignore[assignment]
        if search.config.drop_empty_branch and split_acts[name].outlier_channels == ():
            options["dense"] = dense_int8(split_acts[name])
        symmetric = search.int8[name]
        for label, quant in options.items():
            search.int8[name] = quant
            value = search.mse(base_plan)
            if value < base:
                base, chosen[name], symmetric = value, label, quant
        search.int8[name] = symmetric
    return chosen


def _gains(search: _Search, base_plan: dict[str, str], base: float) -> dict[tuple[str, str], float]:
    forms = ("split", "fp16") if search.config.allow_fp16 else ("split",)
    gains: dict[tuple[str, str], float] = {}
    for name in base_plan:
        for form in forms:
            gains[(name, form)] = base - search.mse({**base_plan, name: form})
    return gains


def _greedy(
    search: _Search, gains: dict[tuple[str, str], float], plan: dict[str, str], current: float
) -> tuple[dict[str, str], float]:
    target = search.config.max_drop_db
    order = sorted(
        (k for k, g in gains.items() if g > 0), key=lambda k: -gains[k] / max(search.extra_cost(*k), 1.0)
    )
    for name, form in order:
        if search.drop(current) <= target:
            break
        if plan[name] != "int8":
            continue
        trial = {**plan, name: form}
        value = search.mse(trial)
        if value < current:
            plan, current = trial, value
            search.steps.append({"layer": name, "form": form, "proxy_drop_db": search.drop(current)})
    return plan, current


def _prune(search: _Search, plan: dict[str, str], current: float) -> tuple[dict[str, str], float]:
    """Downgrade every upgraded layer the target does not need, the costliest first."""
    upgraded = sorted(
        (n for n, f in plan.items() if f != "int8"), key=lambda n: -search.extra_cost(n, plan[n])
    )
    for name in upgraded:
        trial = {**plan, name: "int8"}
        value = search.mse(trial)
        if search.drop(value) <= search.config.max_drop_db:
            plan, current = trial, value
            search.steps.append({"layer": name, "form": "int8", "proxy_drop_db": search.drop(current)})
    return plan, current


def make_plan(
    model: nn.Module,
    layers: dict[str, QuantLayer],
    split_recipe: Recipe,
    fit_batches: Sequence[torch.Tensor],
    held_out: torch.Tensor,
    config: PlanConfig,
) -> PlanResult:
    """Choose each layer's form (module docstring) and return the `mixed` recipe that carries the plan.

    Args:
        model: the model `calib.calibrate.quantize` wrapped with the split budget (`layers` its QuantLayers).
        split_recipe: that run's recipe (split acts with their outlier channels).
        fit_batches: the calibration batches (int8 clips are observed on them).
        held_out: crops not used to fit the quantizers, (N, 3, h, w) in [0, 1].

    Raises:
        CalibError: a layer is not split-quantized, or the model has no layer.
    """
    split = {n: layer.a_quant for n, layer in layers.items()}
    bad = [n for n, q in split.items() if not (isinstance(q, DualRegionActQuantizer) and q.budget == "split")]
    if bad or not layers:
        raise CalibError(
            f"mixed plan: layer {bad[0] if bad else None!r} has no split quantizer to start from"
        )
    split_acts = {n: split_recipe.layers[n].act for n in layers}
    costs = layer_costs(model, layers, config.cost_lr_size, int(held_out.shape[1]))
    stats = observe_inputs(model, layers, fit_batches)
    search = _Search(
        ProxyEvaluator(model, layers, held_out, split_recipe.model.scale),
        split,  # type: ignore[arg-type]
        {n: symmetric_int8(stats[n]) for n in layers},
        costs,
        config,
    )
    all_split = search.mse(dict.fromkeys(layers, "split"))
    all_int8_mse = search.mse(dict.fromkeys(layers, "int8"))
    variants = _choose_int8_variants(search, stats, split_acts)  # type: ignore[arg-type]
    plan = dict.fromkeys(layers, "int8")
    current = search.mse(plan)
    gains = _gains(search, plan, current)
    plan, current = _greedy(search, gains, plan, current)
    plan, current = _prune(search, plan, current)
    final = search.mse(plan)
    for name, layer in layers.items():  # leave the model as the plan says
        layer.a_quant = search.int8[name] if plan[name] == "int8" else split[name]
        layer.quant_enabled = plan[name] != "fp16"
    recipe = _plan_recipe(split_recipe, layers, plan)
    proxies = {
        "all_split": all_split,
        "all_int8_mse": all_int8_mse,
        "all_int8_best_variant": search.mse(dict.fromkeys(layers, "int8")),
        "plan": final,
    }
    report = _report(search, proxies, variants, gains, plan, int(held_out.shape[0]))
    int8_plan = dict.fromkeys(layers, "int8")
    search.mse(int8_plan)
    all_int8 = _plan_recipe(split_recipe, layers, int8_plan)
    search.mse(plan)  # the model ends in the plan's state (the report's evaluations changed it)
    table = format_costs(plan, costs, config.fp16_mac_cost, config.cost_lr_size)
    return PlanResult(recipe, plan, costs, report, table, all_int8)


def _report(
    search: _Search,
    proxies: dict[str, float],
    variants: dict[str, str],
    gains: dict[tuple[str, str], float],
    plan: dict[str, str],
    held_out: int,
) -> dict[str, Any]:
    """What the search measured, for `drq quantize --stats` (JSON-ready)."""
    config, costs = search.config, search.costs
    return {
        "config": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "held_out_crops": held_out,
        "proxy": {
            label: {"mse": m, "psnr_db": proxy_psnr_db(m), "predicted_drop_db": search.drop(m)}
            for label, m in proxies.items()
        },
        "int8_variants": variants,
        "gains_mse": {f"{n}/{f}": g for (n, f), g in gains.items()},
        "steps": search.steps,
        "plan": plan,
        "totals": plan_totals(plan, costs, config.fp16_mac_cost),
        "totals_all_split": plan_totals(dict.fromkeys(plan, "split"), costs, config.fp16_mac_cost),
        "evaluations": search.proxy.evaluations,
        "target_met": search.drop(proxies["plan"]) <= config.max_drop_db,
    }


def _plan_recipe(split_recipe: Recipe, layers: dict[str, QuantLayer], plan: dict[str, str]) -> Recipe:
    """The split recipe with int8 layers' acts replaced and the plan attached (budget `mixed`)."""
    from dataclasses import replace

    entries: dict[str, LayerRecipe] = {}
    for name, entry in split_recipe.layers.items():
        if plan[name] == "int8":
            act = layers[name].a_quant.to_recipe()  # type: ignore[union-attr]
            entries[name] = LayerRecipe(entry.op, entry.weight, act)
        else:
            entries[name] = entry
    return replace(split_recipe, budget="mixed", layers=entries, plan=dict(plan))
