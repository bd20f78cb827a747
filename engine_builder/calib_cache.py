"""TensorRT calibration caches (implicit INT8, TensorRT <= 10.x) written from a recipe.

Format (what TensorRT's `IInt8Calibrator.writeCalibrationCache` produces and `readCalibrationCache`
gives back; TensorRT treats it as opaque bytes)::

    TRT-<version code>-<algorithm>
    <tensor name>: <8 hex digits>

* `<version code>` is TensorRT's `NV_TENSORRT_VERSION`: major*1000 + minor*100 + patch up to 8.x
  (`TRT-8601-...` for 8.6.1), major*10000 + minor*100 + patch from 10.0 (`TRT-100300-...` for 10.3.0),
  as NvInferVersion.h defines it in each release.
* `<algorithm>` is `EntropyCalibration2` (IInt8EntropyCalibrator2) or `MinMaxCalibration`
  (IInt8MinMaxCalibrator).
* each value is the per-tensor *scale* (dynamic range / 127), a float32 written as the 8 hex digits
  of its big-endian bytes.

NVIDIA ModelOpt reads the same file (`modelopt.onnx.quantization.quantize(...,
calibration_cache_path=...)`): `modelopt/onnx/quantization/calib_utils.py`,
`import_scales_from_calib_cache` (nvidia-modelopt 0.47.0, lines 154-179) skips the first line,
splits every other line on ": " into exactly two parts and decodes the value with
`struct.unpack("!f", bytes.fromhex(...))`, i.e. a big-endian float32 used as the QuantizeLinear scale
(`qdq_utils.replace_scale_values`), not an amax. So this module writes no blank lines, no comments,
and always 8 hex digits (leading zeros kept, which `bytes.fromhex` needs).

What ModelOpt 0.47.0 then does with it (`int8.quantize`, measured in
tests/engine_builder/test_modelopt_cache.py): it still calibrates (on `calibration_data`, or random
data), quantizes only nodes with an input named in the cache, and overwrites the scale initializer
`<tensor>_scale` of each such QuantizeLinear with the cached float32. Consequences for our caches,
which hold conv inputs only:

* pass `op_types_to_quantize=["Conv", "ConvTranspose"]`: by default it also quantizes other
  consumers of a cached tensor (a residual Add), and a co-input without a cache entry makes
  `replace_scale_values` raise "Weight tensor '<name>' not found in graph initializers";
* `high_precision_dtype="fp32"` keeps the scales bit-exact; the default "fp16" rounds them to float16;
* it skips convs with fewer than 16 input or output channels unless they meet its INT8 exceptions
  (`graph_utils.find_nodes_from_convs_to_exclude`), whatever the cache says;
* it strips every "_scale" from a key to get the tensor name, so a tensor whose name contains
  "_scale" is silently left unquantized (`modelopt_misread_tensors` lists them).

TensorRT names the tensors as the ONNX parser registers them, i.e. the ONNX tensor names. A recipe
layer's activation quantizer sits on its conv's *input* tensor, so the cache keys are the input tensor
names of the recipe's convs in the float ONNX graph (`input_tensor_map`).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import onnx

from drq.artifacts import atomic_write_text
from drq.recipe import DualRegionAct, Recipe, UniformAct
from drq.versions import VersionError, parse_version
from engine_builder.errors import BuildError

Algorithm = Literal["entropy2", "minmax"]
ALGORITHMS: tuple[str, ...] = get_args(Algorithm)
ALGORITHM_TAGS: dict[str, str] = {"entropy2": "EntropyCalibration2", "minmax": "MinMaxCalibration"}
_TAG_TO_ALGORITHM = {tag: name for name, tag in ALGORITHM_TAGS.items()}
_HEADER = re.compile(r"^TRT-(\d+)-([A-Za-z0-9]+)$")
_LINE = re.compile(r"^(.+): ([0-9a-fA-F]{8})$")
DEFAULT_VERSION = "10.0.0"
"""Header version when the cache is written without a TensorRT at hand; the calibrator rewrites it."""


class CalibCacheError(BuildError):
    """A calibration cache cannot be written from this recipe, or a cache file is malformed."""


def version_code(version: str) -> int:
    """TensorRT's NV_TENSORRT_VERSION integer for a version string ("8.6.1" -> 8601, "10.3.0" -> 100300).

    Raises:
        CalibCacheError: not a `major.minor[.patch...]` version.
    """
    try:
        major, minor, patch = (parse_version(version, "TensorRT version") + (0,))[:3]
    except VersionError as err:
        raise CalibCacheError(str(err)) from err
    # NvInferVersion.h changed the formula with TensorRT 10 (10.x minors go past 9).
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def scale_hex(scale: float) -> str:
    """The 8 hex digits of a float32's big-endian bytes (what TensorRT writes and ModelOpt decodes)."""
    return struct.pack(">f", float(np.float32(scale))).hex()


def hex_scale(text: str) -> float:
    """Inverse of `scale_hex` (exact: float32 -> hex -> float32)."""
    return float(struct.unpack(">f", bytes.fromhex(text))[0])


@dataclass(frozen=True)
class CalibCache:
    """One calibration cache: header fields and {tensor name: scale} in file order."""

    scales: Mapping[str, float]
    version: int = field(default_factory=lambda: version_code(DEFAULT_VERSION))
    algorithm: Algorithm = "entropy2"

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise CalibCacheError(
                f"algorithm: must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}"
            )
        if not self.scales:
            raise CalibCacheError("scales: a calibration cache needs at least one tensor")
        for name, scale in self.scales.items():
            if not name or "\n" in name or ": " in name:
                raise CalibCacheError(f"tensor {name!r}: names must be non-empty, one line, without ': '")
            if not (np.isfinite(scale) and scale > 0):
                raise CalibCacheError(f"tensor {name!r}: scale must be finite and > 0, got {scale!r}")

    @property
    def header(self) -> str:
        return f"TRT-{self.version}-{ALGORITHM_TAGS[self.algorithm]}"

    def with_header(self, version: int, algorithm: Algorithm) -> CalibCache:
        """The same scales under another TensorRT version / algorithm header."""
        return CalibCache(dict(self.scales), version, algorithm)


def format_cache(cache: CalibCache) -> str:
    """The file text: header line, one `name: hex` line per tensor, a final newline, no blank lines."""
    lines = [cache.header] + [f"{name}: {scale_hex(scale)}" for name, scale in cache.scales.items()]
    return "\n".join(lines) + "\n"


def parse_cache(text: str, source: str = "calibration cache") -> CalibCache:
    """Parse cache text written by TensorRT or `format_cache`.

    Raises:
        CalibCacheError: `<source>: line N: <problem>`.
    """
    lines = text.splitlines()
    if not lines:
        raise CalibCacheError(f"{source}: empty file")
    head = _HEADER.match(lines[0].strip())
    if head is None or head.group(2) not in _TAG_TO_ALGORITHM:
        raise CalibCacheError(
            f"{source}: line 1: expected 'TRT-<version>-EntropyCalibration2' or "
            f"'TRT-<version>-MinMaxCalibration', got {lines[0][:60]!r}"
        )
    scales: dict[str, float] = {}
    for number, line in enumerate(lines[1:], start=2):
        match = _LINE.match(line.rstrip("\r"))
        if match is None:
            raise CalibCacheError(
                f"{source}: line {number}: expected '<tensor>: <8 hex digits>', got {line[:60]!r}"
            )
        name, value = match.group(1), match.group(2)
        if name in scales:
            raise CalibCacheError(f"{source}: line {number}: tensor {name!r} appears twice")
        scales[name] = hex_scale(value)
    try:
        return CalibCache(scales, int(head.group(1)), _TAG_TO_ALGORITHM[head.group(2)])  # type: ignore[arg-type]
    except CalibCacheError as err:
        raise CalibCacheError(f"{source}: {err}") from err


def modelopt_misread_tensors(cache: CalibCache) -> tuple[str, ...]:
    """Tensors of `cache` that ModelOpt's `calibration_cache_path` reader cannot match to the graph.

    ModelOpt (0.47.0, `int8.quantize`) keys each scale as `<tensor>_scale` and recovers the tensor
    name with `key.replace("_scale", "")`, which also removes a "_scale" inside the tensor name; such
    tensors' consumers are then not quantized. TensorRT itself reads these names fine.
    """
    return tuple(name for name in cache.scales if "_scale" in name)


def write_cache(cache: CalibCache, path: str | os.PathLike[str]) -> Path:
    """Write `cache` atomically."""
    return atomic_write_text(path, format_cache(cache))


def read_cache(path: str | os.PathLike[str]) -> CalibCache:
    """Read and validate a cache file.

    Raises:
        CalibCacheError: missing, unreadable or malformed file (named).
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise CalibCacheError(f"{file}: no such calibration cache") from err
    except (OSError, UnicodeDecodeError) as err:
        raise CalibCacheError(f"{file}: cannot read calibration cache ({err.__class__.__name__})") from err
    return parse_cache(text, str(file))


def input_tensor_map(model: onnx.ModelProto) -> dict[str, str]:
    """{recipe layer name: name of its conv's input tensor} in a float graph from `drq export`.

    Uses the exporter's layer map (`drq.layers` metadata: layer -> node name).

    Raises:
        CalibCacheError: no layer map, a mapped node is missing, or the graph is already quantized
            (a conv input produced by DequantizeLinear: the cache is for the float graph only).
    """
    from engine_builder.errors import ExportError
    from engine_builder.lowerings.graph import layer_map

    try:
        layers = layer_map(model)
    except ExportError as err:
        raise CalibCacheError(str(err)) from err
    nodes = {node.name: node for node in model.graph.node}
    producers = {out: node for node in model.graph.node for out in node.output}
    mapping: dict[str, str] = {}
    for layer, node_name in layers.items():
        node = nodes.get(node_name)
        if node is None or not node.input:
            raise CalibCacheError(
                f"model: layer {layer!r} maps to node {node_name!r}, which is not in the graph"
            )
        tensor = node.input[0]
        producer = producers.get(tensor)
        if producer is not None and producer.op_type in ("DequantizeLinear", "QuantizeLinear"):
            raise CalibCacheError(
                f"model: layer {layer!r} already has Q/DQ on its input; a calibration cache "
                "goes with the float graph (drq export --lowering fp32)"
            )
        mapping[layer] = tensor
    return mapping


ConflictPolicy = Literal["error", "max"]
IDENTITY_KEYS = ("drq.arch", "drq.scale", "drq.checkpoint_sha256")
"""ONNX metadata `drq export` writes that names the model (arch, upscaling factor, checkpoint hash)."""


def check_model_identity(recipe: Recipe, model: onnx.ModelProto) -> None:
    """Refuse an ONNX model whose drq metadata names another arch, scale or checkpoint than the recipe.

    A key the ONNX file lacks (a graph drq did not export) or the recipe leaves empty is not compared.

    Raises:
        CalibCacheError: `model is imdn x2 (drq.scale 2), the recipe is for x4; ...`.
    """
    meta = {p.key: p.value for p in model.metadata_props}
    wanted = (recipe.model.arch, str(recipe.model.scale), recipe.model.checkpoint_sha256)
    for key, want in zip(IDENTITY_KEYS, wanted, strict=True):
        found = meta.get(key)
        if found is not None and want and found != want:
            raise CalibCacheError(
                f"{key} is {found[:16]!r}, the recipe's model has {want[:16]!r}; export the float graph "
                "of the recipe's model (drq export --recipe R --lowering fp32)"
            )


def cache_from_recipe(
    recipe: Recipe,
    tensor_names: Mapping[str, str],
    *,
    algorithm: Algorithm = "entropy2",
    version: str = DEFAULT_VERSION,
    on_conflict: ConflictPolicy = "error",
) -> CalibCache:
    """Per-tensor INT8 scales of a uniform symmetric 8-bit recipe, keyed by the ONNX tensors TensorRT sees.

    Args:
        recipe: every layer must have a signed symmetric 8-bit uniform activation quantizer.
        tensor_names: {layer name: ONNX input tensor name of its conv} (`input_tensor_map`).
        algorithm: header algorithm; must match the calibrator class that serves the cache.
        version: TensorRT version for the header (the calibrator rewrites it to the running one).
        on_conflict: two layers reading one tensor with different scales: "error", or "max" (the
            larger scale covers both ranges).

    Raises:
        CalibCacheError: a dual-region recipe (a `split` budget has two scales per tensor and cannot be
            one TensorRT scale), a non-8-bit or asymmetric layer, a layer without a tensor name, or a
            scale conflict.
    """
    scales: dict[str, float] = {}
    owners: dict[str, str] = {}
    for name, layer in recipe.layers.items():
        act = layer.act
        if isinstance(act, DualRegionAct):
            raise CalibCacheError(
                f"recipe layer {name!r}: the {act.budget!r} dual-region budget has a dense and "
                "an outlier scale; a TensorRT calibration cache holds one scale per tensor "
                "(use drq export --lowering drq-split or drq-plugin)"
            )
        if not isinstance(act, UniformAct):  # FP8: TensorRT calibrates INT8 only; FP8 is explicit Q/DQ
            raise CalibCacheError(
                f"recipe layer {name!r}: a TensorRT calibration cache is for INT8; an {act.kind} recipe "
                "goes to TensorRT as Q/DQ (drq export --lowering fp8)"
            )
        if act.bits != 8 or not act.symmetric:
            raise CalibCacheError(
                f"recipe layer {name!r}: TensorRT INT8 calibration needs 8-bit signed symmetric "
                f"activations, got {act.bits}-bit {'signed' if act.signed else 'unsigned'} "
                f"zero point {act.zero_point}"
            )
        tensor = tensor_names.get(name)
        if tensor is None:
            raise CalibCacheError(
                f"recipe layer {name!r}: no ONNX input tensor name for it "
                f"({len(tensor_names)} mapped layers); export the float model from this recipe"
            )
        scale = float(np.float32(act.scale))
        if tensor in scales and scales[tensor] != scale:
            if on_conflict == "error":
                raise CalibCacheError(
                    f"tensor {tensor!r}: layers {owners[tensor]!r} and {name!r} read it with "
                    f"scales {scales[tensor]!r} and {scale!r}; TensorRT keeps one per tensor"
                )
            scale = max(scale, scales[tensor])
        scales[tensor] = scale
        owners.setdefault(tensor, name)
    return CalibCache(scales, version_code(version), algorithm)


INT8_ELIGIBLE_OPS: frozenset[str] = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "Gemm",
        "MatMul",
        "Add",
        "Sub",
        "Mul",
        "Concat",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Relu",
        "LeakyRelu",
        "PRelu",
        "Sigmoid",
        "Clip",
        "DepthToSpace",
        "Reshape",
        "Transpose",
        "Resize",
        "Split",
        "Slice",
    }
)
"""ONNX ops whose TensorRT layers have INT8 implementations (convolution, deconvolution, matrix multiply,
elementwise, concatenation, pooling, activation, shuffle, resize, slice). In implicit INT8 TensorRT keeps
a layer in INT8 only when every tensor it reads and writes has a scale, and otherwise falls back to float
("Missing scale and zero-point for tensor ..., expect fall back to non-int8 implementation for any layer
consuming or producing given tensor", TensorRT's build warning as quoted in NVIDIA/TensorRT issues #2462
and #4058), so the cache needs every input and output of these layers."""


def _float_tensors(model: onnx.ModelProto) -> set[str]:
    """Tensors whose inferred element type is float32 (shape and index tensors are not quantized)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    return {v.name for v in values if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT}


def int8_tensors(model: onnx.ModelProto) -> list[str]:
    """Every float activation read or written by an INT8-eligible node of the float graph, in graph order
    (initializers and Constant outputs are weights; int64 shapes and indices, e.g. a Slice's starts, are
    no activations)."""
    constants = {t.name for t in model.graph.initializer}
    constants |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    floats = _float_tensors(model)
    names: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type in INT8_ELIGIBLE_OPS and node.domain in ("", "ai.onnx"):
            for tensor in (*node.input, *node.output):
                if tensor and tensor not in constants and tensor in floats:
                    names[tensor] = None
    return list(names)


def scales_from_ranges(ranges: Mapping[str, tuple[float, float]]) -> dict[str, float]:
    """Symmetric INT8 scales max(|min|, |max|) / 127 (float32) of observed ranges; a tensor that was
    always zero gets 1 / 127 (any scale codes it as 0, and TensorRT needs one > 0 to keep it INT8)."""
    out = {}
    for name, (lo, hi) in ranges.items():
        amax = np.float32(max(abs(float(lo)), abs(float(hi))))
        out[name] = float((amax if amax > 0 else np.float32(1.0)) / np.float32(127.0))
    return out


def complete_cache(cache: CalibCache, observed: Mapping[str, float], model: onnx.ModelProto) -> CalibCache:
    """`cache` (the recipe's conv-input scales, which win) plus an observed scale for every other tensor
    of an INT8-eligible layer (`int8_tensors`), in graph order.

    Raises:
        CalibCacheError: an INT8-eligible tensor has neither a recipe nor an observed scale.
    """
    scales: dict[str, float] = {}
    for tensor in int8_tensors(model):
        scale = cache.scales.get(tensor, observed.get(tensor))
        if scale is None:
            raise CalibCacheError(f"tensor {tensor!r}: no recipe scale and no observed range")
        scales[tensor] = scale
    scales.update({name: s for name, s in cache.scales.items() if name not in scales})
    return CalibCache(scales, cache.version, cache.algorithm)


def missing_int8_tensors(cache: CalibCache, model: onnx.ModelProto) -> tuple[str, ...]:
    """INT8-eligible tensors of `model` without a scale in `cache` (their layers fall back to float)."""
    return tuple(t for t in int8_tensors(model) if t not in cache.scales)


def observe_int8_scales(model: onnx.ModelProto, inputs, threads: int = 1) -> dict[str, float]:
    """Scales of every INT8-eligible tensor of the float graph over calibration `inputs` (NCHW float32),
    observed by onnxruntime (`lowerings.ort_cpu.observe_tensor_ranges`, the ranges the ort-cpu target uses).

    Raises:
        MissingDependency: onnxruntime is not installed.
        CalibCacheError: no input was given.
    """
    from engine_builder.errors import ExportError
    from engine_builder.lowerings.ort_cpu import observe_tensor_ranges

    try:
        ranges = observe_tensor_ranges(model, inputs, int8_tensors(model), threads)
    except ExportError as err:
        raise CalibCacheError(str(err)) from err
    return scales_from_ranges(ranges)


def complete_from_images(
    cache: CalibCache, model: onnx.ModelProto, folder: str | os.PathLike[str], scale: int, images: int = 8
) -> CalibCache:
    """`complete_cache` with scales observed on `images` 64x64 LR crops of the HR images in `folder`
    (`drq.imaging.datasets.calib_crops`, seed 0: the crops `drq export --target ort-cpu` observes).

    Raises:
        CalibCacheError: `images` < 1.
        ImageError: the folder has too few readable images.
    """
    from drq.imaging.datasets import calib_crops

    if images < 1:
        raise CalibCacheError(f"--images: must be >= 1, got {images}")
    crops = [c[None] for c in calib_crops(folder, scale, 64, images, seed=0)]
    return complete_cache(cache, observe_int8_scales(model, crops), model)
