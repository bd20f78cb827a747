"""The receptive field of an SR network, read from its ONNX graph: how much overlap tiles need.

`receptive_field(model)` walks the graph once in node order and tracks, for every tensor that holds an
image-shaped feature map, two numbers: its *reach* (how many LR pixels, beyond the output pixel's own,
its value may depend on) and its *factor* (its pixels per LR pixel: 1 at the input, 4 after a x4
DepthToSpace, 1/2 after a stride-2 conv). Rules, per op:

- Conv / MaxPool / AveragePool: reach grows by the kernel's extent on its wider side,
  ``max(pad_begin, (k - 1) * dilation - pad_begin)``, divided by the factor (a 3x3 conv at x4 resolution
  reaches 1/4 LR pixel). A stride divides the factor.
- DepthToSpace multiplies the factor; SpaceToDepth divides it (and reaches its block).
- Resize multiplies the factor by its constant ``scales``; with ``sizes`` computed from another
  tensor's Shape it takes that tensor's factor. Linear modes reach one input pixel, cubic two.
- Element-wise ops, Concat, Split, Cast, Q/DQ and custom-domain ops (the dual-region plugins work per
  value): the widest reach of their inputs.
- Reductions over H or W (ReduceMean, GlobalAveragePool, ...) are *global*: whole-feature-map
  statistics, no finite receptive field.

The radius is the output's reach rounded up. ``exact`` is true when the graph has no global op and no
op whose result depends on where the tile starts (strides, size-dependent Resize); then tiles with
``overlap >= radius`` reproduce the whole-image output bit for bit (`serve.tiling`). Otherwise the
radius covers the local part only and tiling approximates; ``approximations`` names the ops.
Any other op on a feature map (Reshape, Transpose, MatMul, ...) raises `ReceptiveFieldError`; pass an
explicit overlap then.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
import onnx
from onnx import numpy_helper

from serve.errors import ServeError


class ReceptiveFieldError(ServeError):
    """The graph holds an op whose spatial reach drq cannot derive."""


POINTWISE = frozenset(
    "Abs Add And Cast Ceil Clip Concat DequantizeLinear Div Elu Equal Erf Exp Floor Gelu Greater "
    "HardSigmoid HardSwish Identity LeakyRelu Less Log Max Mean Min Mish Mul Neg Not Or Pow PRelu "
    "QuantizeLinear Reciprocal Relu Round Selu Sigmoid Sign Softplus Split Sqrt Sub Sum Tanh Where".split()
)
REDUCTIONS = frozenset(
    "ReduceMean ReduceSum ReduceMax ReduceMin ReduceL1 ReduceL2 ReduceSumSquare ReduceProd".split()
)
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
SHAPE_OPS = frozenset({"Gather", "Slice", "Unsqueeze", "Squeeze", "Concat", "Cast", "Mul", "Div", "Floor"})


@dataclass(frozen=True)
class ReceptiveField:
    """What tiling an ONNX SR model needs.

    Attributes:
        radius: LR pixels of context each output pixel depends on (local part, rounded up).
        exact: tiles with ``overlap >= radius`` reproduce the whole-image output exactly.
        approximations: the ops that make tiling approximate (global statistics, tile-origin dependence).
    """

    radius: int
    exact: bool
    approximations: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Map:
    reach: Fraction  # LR pixels
    factor: Fraction | None  # None: spatially reduced (broadcasts over H, W)


@dataclass(frozen=True)
class _ShapeOf:
    factor: Fraction | None  # factor of the tensor whose Shape this is derived from


@dataclass
class _Walk:
    constants: dict[str, np.ndarray]
    maps: dict[str, _Map | _ShapeOf] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _kernel_reach(node: onnx.NodeProto, walk: _Walk) -> tuple[int, int]:
    """(extent in the op's own pixels, stride) of a Conv or pooling node: the wider side, worst axis."""
    attrs = _attrs(node)
    kernel = attrs.get("kernel_shape")
    if kernel is None and len(node.input) > 1 and node.input[1] in walk.constants:
        kernel = walk.constants[node.input[1]].shape[2:]
    if kernel is None:
        raise ReceptiveFieldError(f"{node.op_type} {node.name!r}: kernel shape unknown")
    rank = len(kernel)
    dilations = list(attrs.get("dilations", [1] * rank))
    pads = list(attrs.get("pads", [0] * 2 * rank))
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
        pads = [(k - 1) * d // 2 for k, d in zip(kernel, dilations, strict=True)] * 2
    extent = max(max(pads[i], (kernel[i] - 1) * dilations[i] - pads[i]) for i in range(rank))
    return extent, max(attrs.get("strides", [1] * rank))


def _resize(node: onnx.NodeProto, source: _Map, walk: _Walk) -> _Map:
    assert source.factor is not None
    mode = _attrs(node).get("mode", b"nearest")
    step = {b"nearest": 0, b"linear": 1, b"cubic": 2}.get(mode, 2)
    reach = source.reach + Fraction(step) / source.factor
    scales = node.input[2] if len(node.input) > 2 else ""
    sizes = node.input[3] if len(node.input) > 3 else ""
    if scales and scales in walk.constants and walk.constants[scales].size:
        spatial = walk.constants[scales].reshape(-1)[2:]
        if len(set(spatial.tolist())) != 1 or float(spatial[0]) != int(spatial[0]):
            walk.notes.append(f"Resize {node.name!r}: non-integer or unequal scales {spatial.tolist()}")
        return _Map(reach, source.factor * Fraction(float(spatial[0])).limit_denominator(64))
    shape_of = walk.maps.get(sizes)
    if isinstance(shape_of, _ShapeOf) and shape_of.factor is not None:
        walk.notes.append(f"Resize {node.name!r}: to another tensor's size (depends on the tile's size)")
        return _Map(reach, shape_of.factor)
    raise ReceptiveFieldError(f"Resize {node.name!r}: scale neither constant nor another tensor's shape")


def _spatial_axes(node: onnx.NodeProto, walk: _Walk) -> set[int]:
    axes = _attrs(node).get("axes")
    if axes is None and len(node.input) > 1 and node.input[1] in walk.constants:
        axes = walk.constants[node.input[1]].reshape(-1).tolist()
    return {2, 3, -1, -2} if axes is None else {int(a) for a in axes} & {2, 3, -1, -2}


def _combine(node: onnx.NodeProto, inputs: list[_Map]) -> _Map:
    factors = {m.factor for m in inputs if m.factor is not None}
    if len(factors) > 1:
        raise ReceptiveFieldError(f"{node.op_type} {node.name!r}: joins feature maps of different resolution")
    return _Map(max(m.reach for m in inputs), factors.pop() if factors else None)


def _step(node: onnx.NodeProto, walk: _Walk) -> _Map | _ShapeOf | None:
    """The state of `node`'s outputs, or None when they are not derived from the image."""
    states = [walk.maps.get(name) for name in node.input]
    maps = [s for s in states if isinstance(s, _Map)]
    shapes = [s for s in states if isinstance(s, _ShapeOf)]
    op = node.op_type
    if op == "Shape" and maps:
        return _ShapeOf(maps[0].factor)
    if not maps:
        # Sizes are concatenated as [N, C, H, W]: the spatial entries, last, name the tensor that counts.
        return shapes[-1] if shapes and op in SHAPE_OPS else None
    first = maps[0]
    if first.factor is None:  # statistics broadcast back over H, W: no spatial reach of their own
        return _combine(node, maps)
    if op in ("Conv", "MaxPool", "AveragePool", "LpPool"):
        extent, stride = _kernel_reach(node, walk)
        if stride > 1:
            walk.notes.append(f"{op} {node.name!r}: stride {stride} (output depends on the tile's origin)")
        return _Map(first.reach + Fraction(extent) / first.factor, first.factor / stride)
    if op in ("DepthToSpace", "SpaceToDepth"):
        block = int(_attrs(node)["blocksize"])
        if op == "DepthToSpace":
            return _Map(first.reach, first.factor * block)
        walk.notes.append(f"SpaceToDepth {node.name!r}: block {block} (output depends on the tile's origin)")
        return _Map(first.reach + Fraction(block - 1) / first.factor, first.factor / block)
    if op == "Resize":
        return _resize(node, first, walk)
    if op == "Pad":
        # Border values only (the mixed lowering pads explicitly before an unpadded conv, whose full
        # kernel extent then counts): the reach of every inner pixel is unchanged.
        return _Map(first.reach, first.factor)
    if op in GLOBAL_POOLS or (op in REDUCTIONS and _spatial_axes(node, walk)):
        walk.notes.append(f"{op} {node.name!r}: statistics of the whole feature map")
        return _Map(first.reach, None)
    if op in POINTWISE or node.domain not in ("", "ai.onnx"):
        return _combine(node, maps)
    raise ReceptiveFieldError(f"{op} {node.name!r}: cannot derive its spatial reach; pass --overlap")


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    found = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a for a in node.attribute if a.name == "value"), None)
            if value is not None:
                found[node.output[0]] = numpy_helper.to_array(value.t)
    return found


def receptive_field(model: onnx.ModelProto) -> ReceptiveField:
    """The receptive field of a single-input, single-output SR graph (rules in the module docstring).

    Raises:
        ReceptiveFieldError: an op's reach cannot be derived, or the output is not a feature map.
    """
    graph = model.graph
    constants = _constants(graph)
    inputs = [i.name for i in graph.input if i.name not in constants]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ReceptiveFieldError(
            f"expected one input and one output, found {len(inputs)} and {len(graph.output)}"
        )
    walk = _Walk(constants, {inputs[0]: _Map(Fraction(0), Fraction(1))})
    for node in graph.node:
        state = _step(node, walk)
        if state is not None:
            for name in node.output:
                walk.maps[name] = state
    out = walk.maps.get(graph.output[0].name)
    if not isinstance(out, _Map) or out.factor is None:
        raise ReceptiveFieldError(f"output {graph.output[0].name!r}: not a feature map of the input")
    notes = tuple(dict.fromkeys(walk.notes))
    return ReceptiveField(radius=math.ceil(out.reach), exact=not notes, approximations=notes)
