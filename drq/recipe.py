"""The recipe: a versioned JSON artifact holding every quantizer parameter of a PTQ run.

It is the only contract between `calib/` (which writes it) and `engine_builder/` (which lowers it to
ONNX and TensorRT). Torch-free on purpose. Every float is stored as the exact decimal of a float32, so
that torch, NumPy, ONNX and the kernels all start from the same bits.

Layout (schema_version 2; version 1 lacks the b-bit code split and the plan, and loads through
`migrate_v1`)::

    {"schema_version": 2, "producer": "drq 0.1.0",
     "model": {"arch": "imdn", "scale": 4, "checkpoint_sha256": "...", "input_range": 1.0,
               "checkpoint": "../shared/sr_weights/imdn_x4.pth"},
     "method": "drq+saft", "w_bits": 4, "a_bits": 4, "budget": "split", "weight_mode": "per-channel",
     "calibration": {"images": 100, "crop": 96, "seed": 0, "source": "bsd200", "epochs": 10, "wall_s": 61.2},
     "layers": {"body.0.c1": {"op": "conv2d",
                              "weight": {"bits": 4, "axis": 0, "scale": [...]},
                              "act": {"kind": "dual_region", "budget": "split", "bits": 4, "lower": -0.3,
                                      "breakpoint": 0.1, "upper": 2.4, "outlier_scale": 0.33,
                                      "outlier_channels": [3, 17]}}},
     "plan": {}}

An `fp8` recipe (budget "fp8") has `{"kind": "fp8", "format": "e4m3fn", "scale": s}` activations and
weights with `"format": "e4m3fn"` (per-channel scale = amax / 448). A model outside the zoo (`calib.api`)
has arch "custom", an empty checkpoint_sha256 and its `state_dict_sha256` / `module_class` instead
(schema 2 fields with defaults).

`layers` keeps the models' execution order. Grid arithmetic derived from these parameters lives in
`drq.grids`, shared by the torch quantizers and the ONNX lowerings.

Version 2 adds `plan` (default `{}`): for the `mixed` budget (`calib.plan`), the form each layer's conv
runs in, `{"body.0.c1": "int8" | "split" | "fp16"}`. An `int8` layer has an 8-bit signed uniform act (a
nonzero zero point is a shifted grid for inputs bounded below), a `split` layer a split dual-region act,
an `fp16` layer runs in float (its act is kept for reference only). Other budgets have an empty plan.
Version-1 files load through `migrate_v1`.
"""

from __future__ import annotations

import base64
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from drq.artifacts import atomic_write_text, canonical_json, schema_version_of, sha256_json
from drq.errors import RecipeError

SCHEMA_VERSION = 2
# Version 1 recipes load through `migrate_v1`: v2 adds the b-bit code split (dense_limit, tail codes),
# the mixed plan, FP8 activations/weights and custom-model identity, all with defaults.
PRODUCER = "drq 0.1.0"

Method = Literal[
    "minmax",
    "percentile",
    "mse",
    "entropy",
    "drq",
    "drq+vft",
    "drq+saft",
    "fp8",
    "drq+adaround",
    "drq+adaround+saft",
    "drq+gptq",
    "drq+gptq+saft",
    "mse+gptq",
]
Budget = Literal["uniform", "paper", "b-bit", "split", "mixed", "fp8"]
DualBudget = Literal["paper", "b-bit", "split"]
WeightMode = Literal["per-channel", "paper"]
LayerOp = Literal["conv2d", "conv_transpose2d", "linear"]
LayerForm = Literal["int8", "split", "fp16"]  # what a layer of a `mixed` plan runs as
# Weight code formats: symmetric integers, or FP8 E4M3 ("fn": finite, no infinities, max 448).
WeightFormat = Literal["int", "e4m3fn"]
FP8_E4M3_MAX = 448.0

METHODS: tuple[str, ...] = get_args(Method)
BUDGETS: tuple[str, ...] = get_args(Budget)
DUAL_BUDGETS: tuple[str, ...] = get_args(DualBudget)
WEIGHT_MODES: tuple[str, ...] = get_args(WeightMode)
# How a `split` breakpoint is initialised before finetuning (the recipe stores only the result).
BREAKPOINT_INITS: tuple[str, ...] = ("mse", "percentile")


# Dual-region methods: the paper's (drq, drq+vft, drq+saft) and, beyond it, learned weight rounding
# (`calib.adaround`) or second-order rounding (`calib.gptq`), alone or followed by SAFT.
DRQ_METHOD_NAMES: tuple[str, ...] = (
    "drq",
    "drq+vft",
    "drq+saft",
    "drq+adaround",
    "drq+adaround+saft",
    "drq+gptq",
    "drq+gptq+saft",
)


def searches_split_breakpoint(method: str, budget: str, breakpoint_init: str) -> bool:
    """Whether a run's split breakpoints come from the MSE search (drq methods, split budget, "mse")."""
    return method in DRQ_METHOD_NAMES and budget == "split" and breakpoint_init == "mse"


def searches_bbit_format(method: str, budget: str, breakpoint_init: str) -> bool:
    """Whether a run's b-bit code split and breakpoint come from the MSE search (`calib.bbit_format`)."""
    return method in DRQ_METHOD_NAMES and budget == "b-bit" and breakpoint_init == "mse"


CODE_SPLIT_FIELDS: tuple[str, str, str] = ("dense_limit", "pos_tail_codes", "neg_tail_codes")
"""The b-bit budget's code split (D, P, N) as `DualRegionAct` field names."""

LAYER_OPS: tuple[str, ...] = get_args(LayerOp)
LAYER_FORMS: tuple[str, ...] = get_args(LayerForm)
WEIGHT_FORMATS: tuple[str, ...] = get_args(WeightFormat)


def default_dense_limit(bits: int) -> int:
    """D = 2^(b-2) - 1: the b-bit budget's dense limit (and tail code count) of schema-1 recipes."""
    return 2 ** (bits - 2) - 1


def f32(value: float) -> float:
    """Round a Python float to the nearest float32 and return it as a Python float (exact)."""
    return float(np.float32(value))


def _check_bits(bits: int, what: str) -> None:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise RecipeError(f"{what}: must be an integer in 2..8, got {bits!r}")


# Activation quantizer values a calibration can produce. SR feature maps of [0, 1] images stay within
# about +-1e3 (the zoo's largest measured bound is ~20), so an activation step below 1e-10 (every
# value saturates: eval scores ~6 dB) or above 1e6, or a range bound beyond +-1e8, is a corrupt or
# hand-edited recipe, not a calibration result. The observers floor breakpoints at 1e-8.
ACT_SCALE_BOUNDS = (1e-10, 1e6)
ACT_RANGE_LIMIT = 1e8


def _check_act_scale(value: float, what: str) -> None:
    _check_finite(value, what, positive=True)
    low, high = ACT_SCALE_BOUNDS
    if not low <= value <= high:
        raise RecipeError(f"{what}: {value!r} is outside [{low:g}, {high:g}], not a calibrated step size")


def _check_finite(value: float, what: str, positive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecipeError(f"{what}: must be a finite number, got {value!r}")
    if positive and not value > 0:
        raise RecipeError(f"{what}: must be > 0, got {value!r}")


@dataclass(frozen=True)
class ModelIdentity:
    """Which network a recipe belongs to; `engine_builder` refuses a checkpoint with another hash."""

    arch: str
    scale: int
    checkpoint_sha256: str
    input_range: float = 1.0
    checkpoint: str = ""  # path as given at quantize time; export/eval use it unless --weights overrides
    # Models outside the zoo (arch "custom", `calib.api`): sha256 of the state_dict's tensors
    # (`calib.api.state_dict_sha256`) and the module's class, since there is no checkpoint file.
    state_dict_sha256: str = ""
    module_class: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str) or not self.arch:
            raise RecipeError("arch: must be a non-empty string")
        if not isinstance(self.module_class, str):
            raise RecipeError(f"module_class: must be a string, got {self.module_class!r}")
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 1:
            raise RecipeError(f"scale: must be a positive integer, got {self.scale!r}")
        for name in ("checkpoint_sha256", "state_dict_sha256"):
            sha = getattr(self, name)
            if not isinstance(sha, str) or not (
                sha == "" or (len(sha) == 64 and all(c in "0123456789abcdef" for c in sha))
            ):
                raise RecipeError(f"{name}: must be 64 lowercase hex digits or '', got {sha!r}")
        _check_finite(self.input_range, "input_range", positive=True)
        if not isinstance(self.checkpoint, str):
            raise RecipeError(f"checkpoint: must be a path string, got {self.checkpoint!r}")


@dataclass(frozen=True)
class WeightQuant:
    """Symmetric weight quantizer: narrow range [-(2^(b-1)-1), 2^(b-1)-1], zero-point 0.

    `axis` is 0 for per-output-channel scales (`scale` has one entry per channel) or None for one
    per-tensor scale (the paper's learned clip u_w = scale * (2^(b-1)-1)). For ConvTranspose2d the
    output-channel axis of the weight is 1; `axis` records the axis actually used.

    `format` "e4m3fn" stores FP8 E4M3 codes instead: w_hat = e4m3(clamp(w / s, -448, 448)) * s (8 bits).

    `codes` (int format only): the integer weight codes themselves, base64 of int8 in the weight's C order
    (`encode_weight_codes`), for learned rounding (`calib.adaround`), where the code is not round(w / s);
    empty means round(w / s). Every lowering takes them as they are (w_hat = codes * s).
    """

    bits: int
    scale: tuple[float, ...]
    axis: int | None = 0
    format: WeightFormat = "int"
    codes: str = ""

    def __post_init__(self) -> None:
        _check_bits(self.bits, "bits")
        if self.format not in WEIGHT_FORMATS:
            raise RecipeError(f"format: must be one of {', '.join(WEIGHT_FORMATS)}, got {self.format!r}")
        if self.format == "e4m3fn" and self.bits != 8:
            raise RecipeError(f"bits: e4m3fn weights are 8 bits, got {self.bits}")
        if self.axis not in (None, 0, 1):
            raise RecipeError(f"axis: must be 0, 1 or null, got {self.axis!r}")
        if not isinstance(self.scale, tuple) or not self.scale:
            raise RecipeError("scale: must be a non-empty list")
        if self.axis is None and len(self.scale) != 1:
            raise RecipeError(f"scale: per-tensor (axis null) needs one scale, got {len(self.scale)}")
        for i, s in enumerate(self.scale):
            _check_finite(s, f"scale[{i}]", positive=True)
        if self.codes:
            if self.format != "int":
                raise RecipeError(f"codes: only int weights store codes, not {self.format!r}")
            codes = decode_weight_codes(self)
            if codes.size == 0 or int(np.abs(codes.astype(np.int16)).max()) > self.qmax:
                raise RecipeError(f"codes: must be non-empty and within +-{self.qmax} for {self.bits} bits")

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1


def encode_weight_codes(codes: np.ndarray) -> str:
    """int8 weight codes (any shape, C order) as the base64 text of `WeightQuant.codes`."""
    return base64.b64encode(np.ascontiguousarray(codes, dtype=np.int8).tobytes()).decode("ascii")


def decode_weight_codes(wq: WeightQuant) -> np.ndarray:
    """`wq.codes` as a flat int8 array (empty when the recipe stores none).

    Raises:
        RecipeError: the text is not base64.
    """
    if not isinstance(wq.codes, str):
        raise RecipeError(f"codes: must be a base64 string, got {type(wq.codes).__name__}")
    try:
        raw = base64.b64decode(wq.codes.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as err:
        raise RecipeError(f"codes: not base64 ({err})") from err
    return np.frombuffer(raw, dtype=np.int8).copy()


@dataclass(frozen=True)
class UniformAct:
    """Per-tensor uniform activation quantizer.

    Signed: codes [-2^(b-1), 2^(b-1)-1] (the full int8 range at b=8, as ONNX QuantizeLinear and
    TensorRT saturate), zero_point 0 when symmetric. Unsigned: codes [0, 2^b-1] with a zero point.
    """

    bits: int
    scale: float
    zero_point: int = 0
    signed: bool = True
    kind: Literal["uniform"] = "uniform"

    def __post_init__(self) -> None:
        _check_bits(self.bits, "bits")
        _check_act_scale(self.scale, "scale")
        if self.kind != "uniform":
            raise RecipeError(f"kind: expected 'uniform', got {self.kind!r}")
        if not isinstance(self.signed, bool):
            raise RecipeError(f"signed: must be true or false, got {self.signed!r}")
        if isinstance(self.zero_point, bool) or not isinstance(self.zero_point, int):
            raise RecipeError(f"zero_point: must be an integer, got {self.zero_point!r}")
        if not self.qmin <= self.zero_point <= self.qmax:
            raise RecipeError(
                f"zero_point: {self.zero_point} is outside the code range [{self.qmin}, {self.qmax}]"
            )

    @property
    def qmin(self) -> int:
        return -(2 ** (self.bits - 1)) if self.signed else 0

    @property
    def qmax(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def symmetric(self) -> bool:
        return self.signed and self.zero_point == 0


@dataclass(frozen=True)
class DualRegionAct:
    """Dual-region activation quantizer (Wang et al., ICCV 2025): dense [-bp, bp] plus outlier tails.

    `lower` / `upper` are l_a / u_a and `breakpoint` is bp of the paper. `outlier_scale` is s_o of the
    `split` budget (None for the others). `outlier_channels` lists the input channels that exceeded
    the breakpoint during calibration (None when not recorded); lowerings may restrict the outlier
    branch to them. See `drq.grids` for the code layout of each budget.
    """

    budget: DualBudget
    bits: int
    lower: float
    breakpoint: float
    upper: float
    outlier_scale: float | None = None
    outlier_channels: tuple[int, ...] | None = None
    kind: Literal["dual_region"] = "dual_region"
    # b-bit budget only (schema 2): dense codes -D..D, positive tail codes D+1..D+P, negative tail codes
    # -(D+1)..-(D+N). None takes today's split D = P = N = 2^(b-2)-1 (`default_dense_limit`).
    dense_limit: int | None = None
    pos_tail_codes: int | None = None
    neg_tail_codes: int | None = None

    def __post_init__(self) -> None:
        if self.budget not in DUAL_BUDGETS:
            raise RecipeError(f"budget: must be one of {', '.join(DUAL_BUDGETS)}, got {self.budget!r}")
        _check_bits(self.bits, "bits")
        if self.budget == "b-bit" and self.bits < 3:
            raise RecipeError("bits: the b-bit budget needs at least 3 bits (dense and tail codes)")
        for name in ("lower", "breakpoint", "upper"):
            _check_finite(getattr(self, name), name)
            if abs(getattr(self, name)) > ACT_RANGE_LIMIT:
                raise RecipeError(f"{name}: {getattr(self, name)!r} is beyond +-{ACT_RANGE_LIMIT:g}")
        if self.breakpoint < ACT_SCALE_BOUNDS[0]:
            raise RecipeError(f"breakpoint: {self.breakpoint!r} is below {ACT_SCALE_BOUNDS[0]:g}")
        if not (self.lower <= 0 < self.breakpoint < self.upper):
            raise RecipeError(
                f"need lower <= 0 < breakpoint < upper, got {self.lower}, {self.breakpoint}, {self.upper}"
            )
        if self.budget == "split":
            if self.outlier_scale is None:
                raise RecipeError("outlier_scale: required by the split budget")
            _check_act_scale(self.outlier_scale, "outlier_scale")
        elif self.outlier_scale is not None:
            raise RecipeError(f"outlier_scale: only the split budget has one, not {self.budget!r}")
        self._check_code_split()
        if self.outlier_channels is not None:
            chans = self.outlier_channels
            if not isinstance(chans, tuple) or any(
                isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in chans
            ):
                raise RecipeError("outlier_channels: must be a list of non-negative channel indices")
            if list(chans) != sorted(set(chans)):
                raise RecipeError("outlier_channels: must be sorted and unique")

    def _check_code_split(self) -> None:
        names = CODE_SPLIT_FIELDS
        if self.budget != "b-bit":
            given = [n for n in names if getattr(self, n) is not None]
            if given:
                raise RecipeError(f"{given[0]}: only the b-bit budget has a code split, not {self.budget!r}")
            return
        default = default_dense_limit(self.bits)
        for name in names:
            value = getattr(self, name)
            if value is None:
                object.__setattr__(self, name, default)  # frozen: fill the default once, at construction
            elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise RecipeError(f"{name}: must be a positive integer, got {value!r}")
        top = 2 ** (self.bits - 1)
        if self.dense_limit + self.pos_tail_codes > top - 1:  # type: ignore[operator]
            raise RecipeError(
                f"pos_tail_codes: dense_limit + pos_tail_codes must be <= {top - 1} at {self.bits} bits, "
                f"got {self.dense_limit} + {self.pos_tail_codes}"
            )
        if self.dense_limit + self.neg_tail_codes > top:  # type: ignore[operator]
            raise RecipeError(
                f"neg_tail_codes: dense_limit + neg_tail_codes must be <= {top} at {self.bits} bits, "
                f"got {self.dense_limit} + {self.neg_tail_codes}"
            )

    @property
    def bounded_below(self) -> bool:
        """True when the input never goes below -bp (e.g. after ReLU): no negative tail."""
        return self.lower >= -self.breakpoint


@dataclass(frozen=True)
class FP8Act:
    """Per-tensor FP8 E4M3 activation quantizer: x_hat = e4m3(clamp(x / s, -448, 448)) * s.

    The cast rounds to nearest even (subnormals kept), as ONNX QuantizeLinear with a float8e4m3fn zero
    point does with saturate=1; `scale` is amax / 448 from calibration.
    """

    scale: float
    format: Literal["e4m3fn"] = "e4m3fn"
    kind: Literal["fp8"] = "fp8"

    def __post_init__(self) -> None:
        _check_finite(self.scale, "scale", positive=True)
        if self.format != "e4m3fn":
            raise RecipeError(f"format: only 'e4m3fn' is supported, got {self.format!r}")
        if self.kind != "fp8":
            raise RecipeError(f"kind: expected 'fp8', got {self.kind!r}")

    @property
    def bits(self) -> int:
        return 8


ActQuant = UniformAct | DualRegionAct | FP8Act


def _act_kind_of_budget(budget: str) -> str:
    """The activation `kind` every layer of a recipe with this budget has."""
    return {"uniform": "uniform", "fp8": "fp8"}.get(budget, "dual_region")


@dataclass(frozen=True)
class LayerRecipe:
    """Quantizers of one wrapped layer: its weight and its input activation."""

    op: LayerOp
    weight: WeightQuant
    act: ActQuant

    def __post_init__(self) -> None:
        if self.op not in LAYER_OPS:
            raise RecipeError(f"op: must be one of {', '.join(LAYER_OPS)}, got {self.op!r}")


@dataclass(frozen=True)
class CalibrationInfo:
    """How the recipe was calibrated (informational, but validated)."""

    images: int
    crop: int
    seed: int
    source: str = ""
    epochs: int = 0
    wall_s: float = 0.0

    def __post_init__(self) -> None:
        for name in ("images", "crop", "seed", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RecipeError(f"calibration.{name}: must be a non-negative integer, got {value!r}")
        _check_finite(self.wall_s, "calibration.wall_s")


@dataclass(frozen=True)
class Recipe:
    """Every quantizer parameter of one PTQ run, plus the identity of the model it belongs to."""

    model: ModelIdentity
    method: Method
    w_bits: int
    a_bits: int
    budget: Budget
    weight_mode: WeightMode
    calibration: CalibrationInfo
    layers: dict[str, LayerRecipe] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION
    producer: str = PRODUCER
    plan: dict[str, LayerForm] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise RecipeError(f"method: must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.budget not in BUDGETS:
            raise RecipeError(f"budget: must be one of {', '.join(BUDGETS)}, got {self.budget!r}")
        if self.weight_mode not in WEIGHT_MODES:
            raise RecipeError(
                f"weight_mode: must be one of {', '.join(WEIGHT_MODES)}, got {self.weight_mode!r}"
            )
        _check_bits(self.w_bits, "w_bits")
        _check_bits(self.a_bits, "a_bits")
        if not self.layers:
            raise RecipeError("layers: a recipe must quantize at least one layer")
        if self.budget == "mixed":
            check_plan(self.plan, self.layers, self.a_bits)
            return
        if self.plan:
            raise RecipeError(f"plan: only the mixed budget has a per-layer plan, not {self.budget!r}")
        for name, layer in self.layers.items():
            act_is_dual = isinstance(layer.act, DualRegionAct)
            if layer.act.kind != _act_kind_of_budget(self.budget):
                raise RecipeError(
                    f"layers[{name!r}].act: kind {layer.act.kind!r} does not match budget {self.budget!r}"
                )
            if (layer.weight.format == "e4m3fn") != (self.budget == "fp8"):
                raise RecipeError(
                    f"layers[{name!r}].weight.format: {layer.weight.format!r} does not match budget "
                    f"{self.budget!r} (fp8 recipes have e4m3fn weights, the others int)"
                )
            if act_is_dual and layer.act.budget != self.budget:
                raise RecipeError(
                    f"layers[{name!r}].act.budget: {layer.act.budget!r} differs from budget {self.budget!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (tuples become lists; key order is the schema's)."""
        out = asdict(self)
        out["layers"] = {name: _layer_dict(layer) for name, layer in self.layers.items()}
        out["plan"] = dict(self.plan)
        # Tuples become lists, exactly as a JSON load would give them back.
        return json.loads(json.dumps(out, allow_nan=False))

    def sha256(self) -> str:
        """Canonical-JSON sha256: what engines and manifests record as the recipe they came from."""
        return sha256_json(self.to_dict())


def check_plan(plan: dict[str, str], layers: dict[str, LayerRecipe], a_bits: int) -> None:
    """A `mixed` plan names every layer once, with a form its act can run in.

    Raises:
        RecipeError: naming the first offending layer.
    """
    if a_bits != 8:
        raise RecipeError(f"a_bits: the mixed budget runs INT8 kernels and needs 8, got {a_bits}")
    if not isinstance(plan, dict) or list(plan) != list(layers):
        missing = [n for n in layers if n not in plan] if isinstance(plan, dict) else list(layers)
        extra = [n for n in plan if n not in layers] if isinstance(plan, dict) else []
        raise RecipeError(
            f"plan: must list every layer in the layers' order (missing {missing[:3]}, unknown {extra[:3]})"
        )
    for name, form in plan.items():
        act = layers[name].act
        if form not in LAYER_FORMS:
            raise RecipeError(f"plan[{name!r}]: must be one of {', '.join(LAYER_FORMS)}, got {form!r}")
        if form == "int8" and not (isinstance(act, UniformAct) and act.bits == 8 and act.signed):
            raise RecipeError(f"plan[{name!r}]: int8 needs an 8-bit signed uniform act, got {act.kind!r}")
        if form == "split" and not (isinstance(act, DualRegionAct) and act.budget == "split"):
            raise RecipeError(f"plan[{name!r}]: split needs a split dual-region act, got {act.kind!r}")


# ----------------------------------------------------------------------------------------------------
# Loading: every field validated, every error names the file and the field path.


def _layer_dict(layer: LayerRecipe) -> dict[str, Any]:
    """A layer's JSON form; weight `codes` only when stored, so recipes without learned rounding keep
    the JSON (and sha256) they had before the field existed."""
    out = asdict(layer)
    if not out["weight"].get("codes"):
        out["weight"].pop("codes", None)
    return out


def _join(path: str, message: str, fields: set[str]) -> str:
    """Prefix a dataclass's own message with the field path: `layers['x'].act` + `bits: ...`."""
    head = message.split(":", 1)[0].split("[", 1)[0]
    return f"{path}.{message}" if head in fields else f"{path}: {message}"


def _build(cls: type, data: Any, path: str) -> Any:
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: must be an object")
    known = {f for f in cls.__dataclass_fields__}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RecipeError(f"{path}: unknown field(s) {', '.join(unknown)}")
    kwargs = {}
    for key, value in data.items():
        if isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise RecipeError(f"{path}: {err}") from err
    except RecipeError as err:
        raise RecipeError(_join(path, str(err), known)) from err


def _act_from_dict(data: Any, path: str) -> ActQuant:
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: must be an object")
    kind = data.get("kind")
    if kind == "uniform":
        return _build(UniformAct, data, path)
    if kind == "dual_region":
        return _build(DualRegionAct, data, path)
    if kind == "fp8":
        return _build(FP8Act, data, path)
    raise RecipeError(f"{path}.kind: must be 'uniform', 'dual_region' or 'fp8', got {kind!r}")


def migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 recipe as schema 2 (a copy; the input is not modified).

    Schema 2 adds only fields with defaults: the b-bit code split (schema 1's fixed D = 2^(b-2)-1,
    filled in by `DualRegionAct`), an empty mixed `plan`, FP8 formats and custom-model identity.
    """
    out = dict(data)
    out["schema_version"] = 2
    out.setdefault("plan", {})
    return out


def recipe_from_dict(data: Any) -> Recipe:
    """Validate a parsed JSON object and build a `Recipe`.

    Raises:
        RecipeError: naming the first offending field.
    """
    version = schema_version_of(data, SCHEMA_VERSION, RecipeError)
    if version == 1:
        data = migrate_v1(data)
        version = SCHEMA_VERSION
    if version != SCHEMA_VERSION:
        raise RecipeError(f"schema_version: {version} is not supported (expected 1 or {SCHEMA_VERSION})")
    required = ("model", "method", "w_bits", "a_bits", "budget", "weight_mode", "calibration", "layers")
    missing = [key for key in required if key not in data]
    if missing:
        raise RecipeError(f"top level: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(data) - set(required) - {"schema_version", "producer", "plan"})
    if unknown:
        raise RecipeError(f"top level: unknown field(s) {', '.join(unknown)}")
    model = _build(ModelIdentity, data["model"], "model")
    calibration = _build(CalibrationInfo, data["calibration"], "calibration")
    raw_layers = data["layers"]
    if not isinstance(raw_layers, dict):
        raise RecipeError("layers: must be an object mapping layer names to quantizers")
    layers: dict[str, LayerRecipe] = {}
    for name, raw in raw_layers.items():
        where = f"layers[{name!r}]"
        if not isinstance(raw, dict):
            raise RecipeError(f"{where}: must be an object")
        unknown = sorted(set(raw) - {"op", "weight", "act"})
        missing = sorted({"op", "weight", "act"} - set(raw))
        if unknown or missing:
            raise RecipeError(
                f"{where}: "
                + "; ".join(
                    part
                    for part in (
                        f"missing {', '.join(missing)}" if missing else "",
                        f"unknown {', '.join(unknown)}" if unknown else "",
                    )
                    if part
                )
            )
        weight = _build(WeightQuant, raw["weight"], f"{where}.weight")
        act = _act_from_dict(raw["act"], f"{where}.act")
        try:
            layers[name] = LayerRecipe(op=raw["op"], weight=weight, act=act)
        except RecipeError as err:
            raise RecipeError(_join(where, str(err), {"op"})) from err
    return Recipe(
        model=model,
        method=data["method"],
        w_bits=data["w_bits"],
        a_bits=data["a_bits"],
        budget=data["budget"],
        weight_mode=data["weight_mode"],
        calibration=calibration,
        layers=layers,
        schema_version=version,
        producer=data.get("producer", PRODUCER),
        plan=_plan_from_dict(data.get("plan", {})),
    )


def _plan_from_dict(raw: Any) -> dict[str, LayerForm]:
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise RecipeError("plan: must be an object mapping layer names to int8, split or fp16")
    return dict(raw)


def checkpoint_field(weights: str | os.PathLike[str], recipe_file: str | os.PathLike[str]) -> str:
    """What `model.checkpoint` records for `weights`: its path relative to the recipe file's folder
    (absolute when no relative path exists, e.g. another drive), so the recipe works from any folder."""
    target = os.path.abspath(weights)
    try:
        return os.path.relpath(target, os.path.dirname(os.path.abspath(recipe_file)))
    except ValueError:  # Windows: no relative path across drives
        return target


def recipe_checkpoint(recipe: Recipe, recipe_file: str | os.PathLike[str]) -> Path | None:
    """The checkpoint file a recipe loaded from `recipe_file` names (None if it names none).

    A relative `model.checkpoint` is relative to the recipe file's folder (`checkpoint_field`). Recipes
    written before that recorded the path as typed, relative to where `drq quantize` ran: when nothing
    exists beside the recipe but that path exists from here, it is used (the sha256 check still guards
    against the wrong file).
    """
    raw = recipe.model.checkpoint
    if not raw:
        return None
    given = Path(raw)
    if given.is_absolute():
        return given
    beside = Path(recipe_file).parent / given
    return given if not beside.exists() and given.is_file() else beside


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe file.

    Raises:
        RecipeError: `<path>: <field>: <problem>` for a missing, unreadable or invalid file.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise RecipeError(f"{file}: no such recipe file") from err
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"{file}: cannot read recipe ({err.__class__.__name__})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecipeError(f"{file}: not valid JSON (line {err.lineno}, column {err.colno})") from err
    try:
        return recipe_from_dict(data)
    except RecipeError as err:
        raise RecipeError(f"{file}: {err}") from err


def save_recipe(recipe: Recipe, path: str | os.PathLike[str]) -> Path:
    """Write a recipe atomically as indented JSON (hash is over the canonical form, not this text)."""
    text = json.dumps(recipe.to_dict(), indent=1, allow_nan=False)
    # Canonicalisation must succeed too (rejects NaN); cheap insurance that sha256() works later.
    canonical_json(recipe.to_dict())
    return atomic_write_text(path, text + "\n")
