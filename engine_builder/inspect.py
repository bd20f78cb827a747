"""What an engine costs, layer by layer: precisions, MACs and bytes moved of an ONNX graph or a built engine.

For an ONNX graph (`inspect_onnx`), the input is fixed to 1 x C x H x W and shapes are inferred; every
node that moves activations becomes one row:

* `conv` rows (Conv, ConvTranspose, Gemm): input precision is int8 when the input comes from a
  DequantizeLinear (or the dual-region plugin's dequant) of int8 codes, else the tensor's float type;
  weights are int8 when they are DequantizeLinear of int8 initializers; compute is int8 when both are,
  else the float type of the output. MACs: output elements x (input channels / group) x kernel area
  (ConvTranspose: input elements x (output channels / group) x kernel area; Gemm: M x N x K). Bytes read:
  input activation + weights + bias at their stored widths; bytes written: the output at its type, or
  int8 when every consumer is a QuantizeLinear (TensorRT fuses that Q into the conv's epilogue);
* `qdq` rows: activation QuantizeLinear/DequantizeLinear and the plugin's quantize/dequant nodes.
  onnxruntime runs them; TensorRT fuses DQ -> Conv and Conv -> Q, so the totals list their traffic apart;
* `glue` rows: every other op on activations (Add, Concat, activations, DepthToSpace, Clip/Sub of
  drq-split, Casts), bytes at the tensor types, no MACs counted.

Constants, shape arithmetic (int64) and the weight DequantizeLinear (folded into the conv's weights) are
no rows. The FP16 reference is the same model's FP16 graph: the recipe layers' convs (one per call of a
layer in the exporter's `drq.layers` map; a drq-split outlier twin is not one) and the model's own glue
(without the nodes a lowering added: Q/DQ, plugin nodes, nodes named after a recipe layer, the outlier
branch) with every activation and weight at 2 bytes.

For a built engine (`inspect_engine`), the engine inspector's JSON (`MODEL.plan.layers.json`, written by
`drq build` when the runtime could load the engine; or read now when TensorRT and a GPU are here) gives
TensorRT's own layers, tactics and tensor formats; the ONNX graph the engine was built from (manifest
`onnx`, sha256 checked) gives the cost rows.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from onnx import TensorProto

from drq.artifacts import sha256_file
from engine_builder.errors import BuildError
from engine_builder.lowerings.graph import LAYER_CALLS_KEY, LAYER_MAP_KEY, LAYER_OPS, metadata

Kind = Literal["conv", "qdq", "glue"]
_WIDTH = {
    TensorProto.FLOAT: 4,
    TensorProto.FLOAT16: 2,
    TensorProto.BFLOAT16: 2,
    TensorProto.INT8: 1,
    TensorProto.UINT8: 1,
    TensorProto.INT32: 4,
    TensorProto.BOOL: 1,
}
_NAME = {
    TensorProto.FLOAT: "fp32",
    TensorProto.FLOAT16: "fp16",
    TensorProto.BFLOAT16: "bf16",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.INT32: "int32",
    TensorProto.BOOL: "bool",
}
_ACTIVATION_TYPES = (
    TensorProto.FLOAT,
    TensorProto.FLOAT16,
    TensorProto.BFLOAT16,
    TensorProto.INT8,
    TensorProto.UINT8,
    TensorProto.BOOL,
)
_QDQ = ("QuantizeLinear", "DequantizeLinear")
_PLUGIN_DOMAIN = "drq"
_LOWERING_SUFFIXES = ("_outlier", "_AddBranches")


class InspectError(BuildError):
    """The model or engine cannot be inspected (named, one line)."""


@dataclass(frozen=True)
class LayerCost:
    """One row: a node of the graph and what it costs at the inspected size."""

    name: str
    op: str
    kind: Kind
    input_precision: str
    weight_precision: str
    compute_precision: str
    output_precision: str
    macs: int
    bytes_read: int
    bytes_written: int
    layer: str = ""  # recipe layer (drq.layers) of a conv that is one of the model's own convs


@dataclass(frozen=True)
class Totals:
    conv_macs: dict[str, int]
    conv_bytes: int
    glue_bytes: int
    qdq_bytes: int
    glue_nodes: int
    qdq_nodes: int

    @property
    def macs(self) -> int:
        return sum(self.conv_macs.values())


@dataclass(frozen=True)
class Inspection:
    """The report of one ONNX graph or engine."""

    source: str
    size: tuple[int, int]
    rows: tuple[LayerCost, ...]
    totals: Totals
    reference: Totals
    notes: tuple[str, ...] = ()
    engine_layers: tuple[dict[str, Any], ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["totals"]["macs"] = self.totals.macs
        out["reference"]["macs"] = self.reference.macs
        out["ratios_vs_fp16"] = ratios(self)
        return out


def ratios(report: Inspection) -> dict[str, float]:
    """MACs and bytes (conv + glue, TensorRT's view: Q/DQ fused) against the FP16 reference."""
    t, r = report.totals, report.reference
    moved, ref_moved = t.conv_bytes + t.glue_bytes, r.conv_bytes + r.glue_bytes
    return {
        "macs": round(t.macs / r.macs, 4) if r.macs else 0.0,
        "bytes": round(moved / ref_moved, 4) if ref_moved else 0.0,
    }


def parse_size(text: str) -> tuple[int, int]:
    """ "320x180" (WIDTHxHEIGHT, as `drq bench --size` takes it) -> (height, width) = (180, 320).

    Raises:
        InspectError: not two positive integers joined by "x".
    """
    from engine_builder.bench import BenchError
    from engine_builder.bench import parse_size as bench_size

    try:
        return bench_size(text)
    except BenchError as err:
        raise InspectError(str(err)) from err


# ---------------------------------------------------------------------------------------------------
# ONNX graphs


class _Graph:
    """The model at 1 x C x H x W with inferred shapes and types, plus producer/consumer maps."""

    def __init__(self, model: onnx.ModelProto, size: tuple[int, int], source: str) -> None:
        fixed = copy.deepcopy(model)
        if len(fixed.graph.input) != 1:
            raise InspectError(f"{source}: expected one graph input, found {len(fixed.graph.input)}")
        dims = fixed.graph.input[0].type.tensor_type.shape.dim
        if len(dims) != 4:
            raise InspectError(f"{source}: expected an NCHW input, found rank {len(dims)}")
        channels = dims[1].dim_value or 3
        for dim, value in zip(dims, (1, channels, *size), strict=True):
            dim.Clear()
            dim.dim_value = value
        inferred = _infer(fixed, source)
        if _unknown_shapes(inferred):
            inferred = _infer(_fold_shape_tensors(inferred, source), source)
        self.model = inferred
        self.inits = {t.name: t for t in inferred.graph.initializer}
        self.constants = set(self.inits) | {
            o for n in inferred.graph.node if n.op_type == "Constant" for o in n.output
        }
        self.types: dict[str, int] = {t.name: t.data_type for t in inferred.graph.initializer}
        self.shapes: dict[str, tuple[int, ...]] = {t.name: tuple(t.dims) for t in inferred.graph.initializer}
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            tt = v.type.tensor_type
            self.types[v.name] = tt.elem_type
            if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
                self.shapes[v.name] = tuple(int(d.dim_value) for d in tt.shape.dim)
        self.producer = {o: n for n in inferred.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in inferred.graph.node:
            for t in node.input:
                self.consumers.setdefault(t, []).append(node)

    def elems(self, tensor: str) -> int:
        return int(np.prod(self.shapes.get(tensor, (0,)), dtype=np.int64))

    def nbytes(self, tensor: str, elem_type: int | None = None) -> int:
        return self.elems(tensor) * _WIDTH.get(
            self.types.get(tensor, 0) if elem_type is None else elem_type, 4
        )

    def is_activation(self, tensor: str) -> bool:
        return bool(tensor) and tensor not in self.constants and self.types.get(tensor) in _ACTIVATION_TYPES

    def folded(self, node: onnx.NodeProto) -> bool:
        """Constant-foldable (every input a constant): weight DQ, shape arithmetic."""
        return all(not t or t in self.constants for t in node.input)


def _infer(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    del model.graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(model, data_prop=True)
    except onnx.shape_inference.InferenceError as err:
        raise InspectError(f"{source}: shape inference failed ({str(err).splitlines()[0]})") from err


def _unknown_shapes(model: onnx.ModelProto) -> bool:
    known = {
        v.name
        for v in model.graph.value_info
        if v.type.tensor_type.HasField("shape")
        and all(d.HasField("dim_value") for d in v.type.tensor_type.shape.dim)
    }
    known |= {v.name for v in model.graph.input} | {t.name for t in model.graph.initializer}
    return any(
        t and t not in known for node in model.graph.node if node.op_type in LAYER_OPS for t in node.output
    )


def _fold_shape_tensors(model: onnx.ModelProto, source: str) -> onnx.ModelProto:
    """The model with its int64 shape arithmetic replaced by the values onnxruntime computes at this input
    size: onnx's data propagation stops at ops like Div (`x.shape[1] // 2` of a channel split)."""
    from serve.runtime.ort import import_onnxruntime

    ort = import_onnxruntime()
    produced = {o for n in model.graph.node for o in n.output}
    int64 = [v.name for v in model.graph.value_info if v.type.tensor_type.elem_type == TensorProto.INT64]
    int64 = [t for t in int64 if t in produced]
    if not int64:
        return model
    probe = copy.deepcopy(model)
    for name in int64:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(name, TensorProto.INT64, None))
    x = probe.graph.input[0]
    shape = tuple(int(d.dim_value) for d in x.type.tensor_type.shape.dim)
    dtype = np.float16 if x.type.tensor_type.elem_type == TensorProto.FLOAT16 else np.float32
    try:
        sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        values = sess.run(int64, {x.name: np.zeros(shape, dtype=dtype)})
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise InspectError(f"{source}: onnxruntime could not evaluate the shape arithmetic ({err})") from err
    out = copy.deepcopy(model)
    folded = set(int64)
    keep = [n for n in out.graph.node if not set(n.output) <= folded]
    del out.graph.node[:]
    out.graph.node.extend(keep)
    used = {t for n in keep for t in n.input}
    for name, value in zip(int64, values, strict=True):
        if name in used and not any(name in n.output for n in keep):
            out.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(value), name))
    return out


def _int8_source(g: _Graph, tensor: str) -> int | None:
    """The integer type behind `tensor` when it is DequantizeLinear (or plugin dequant) output."""
    node = g.producer.get(tensor)
    if node is None:
        return None
    if node.op_type == "DequantizeLinear" or (node.domain == _PLUGIN_DOMAIN and "Dequant" in node.op_type):
        return g.types.get(node.input[0], TensorProto.INT8)
    return None


def _conv_macs(g: _Graph, node: onnx.NodeProto) -> int:
    w = g.shapes.get(node.input[1], ())
    if node.op_type == "Gemm":
        a = g.shapes.get(node.input[0], (0, 0))
        return int(a[0]) * int(np.prod(w))
    kernel = int(np.prod(w[2:])) if len(w) > 2 else 1
    # weight dim 1 is per group: Conv (Cout, Cin / group, k...), ConvTranspose (Cin, Cout / group, k...)
    if node.op_type == "ConvTranspose":
        return g.elems(node.input[0]) * int(w[1]) * kernel
    return g.elems(node.output[0]) * int(w[1]) * kernel if w else 0


def _weight_precision(g: _Graph, tensor: str) -> tuple[str, int]:
    """(precision, bytes) of a conv's weight: int8 behind a DQ, else the stored type."""
    source = _int8_source(g, tensor)
    if source is not None:
        codes = g.producer[tensor].input[0]
        return _NAME.get(source, "int8"), g.elems(codes) * _WIDTH.get(source, 1)
    return _NAME.get(g.types.get(tensor, 0), "?"), g.nbytes(tensor)


def _conv_row(g: _Graph, node: onnx.NodeProto, layer: str) -> LayerCost:
    x, w, y = node.input[0], node.input[1], node.output[0]
    source = _int8_source(g, x)
    in_type = g.types.get(x, 0) if source is None else source
    w_prec, w_bytes = _weight_precision(g, w)
    out_type = g.types.get(y, 0)
    consumers = g.consumers.get(y, [])
    stored = (
        TensorProto.INT8 if consumers and all(c.op_type == "QuantizeLinear" for c in consumers) else out_type
    )
    int_compute = source is not None and w_prec in ("int8", "uint8")
    bias = g.nbytes(node.input[2]) if len(node.input) > 2 and node.input[2] else 0
    x_bytes = g.elems(x) * _WIDTH.get(in_type, 4)
    return LayerCost(
        name=node.name,
        op=node.op_type,
        kind="conv",
        input_precision=_NAME.get(in_type, "?"),
        weight_precision=w_prec,
        compute_precision="int8" if int_compute else _NAME.get(out_type, "?"),
        output_precision=_NAME.get(stored, "?"),
        macs=_conv_macs(g, node),
        bytes_read=x_bytes + w_bytes + bias,
        bytes_written=g.elems(y) * _WIDTH.get(stored, 4),
        layer=layer,
    )


def _other_row(g: _Graph, node: onnx.NodeProto) -> LayerCost | None:
    inputs = [t for t in node.input if g.is_activation(t)]
    outputs = [t for t in node.output if g.is_activation(t)]
    if not outputs:
        return None
    is_qdq = node.op_type in _QDQ or node.domain == _PLUGIN_DOMAIN
    in_prec = ",".join(dict.fromkeys(_NAME.get(g.types.get(t, 0), "?") for t in inputs)) or "-"
    out_prec = ",".join(dict.fromkeys(_NAME.get(g.types.get(t, 0), "?") for t in outputs))
    return LayerCost(
        name=node.name,
        op=node.op_type,
        kind="qdq" if is_qdq else "glue",
        input_precision=in_prec,
        weight_precision="-",
        compute_precision=out_prec,
        output_precision=out_prec,
        macs=0,
        bytes_read=sum(g.nbytes(t) for t in inputs),
        bytes_written=sum(g.nbytes(t) for t in outputs),
    )


def _layer_of_node(model: onnx.ModelProto) -> dict[str, str]:
    """{conv node name: recipe layer} from the exporter's layer map (every call of a layer)."""
    meta = metadata(model)
    layers = json.loads(meta.get(LAYER_MAP_KEY, "{}"))
    calls = json.loads(meta.get(LAYER_CALLS_KEY, "{}"))
    return {node: layer for layer, first in layers.items() for node in calls.get(layer, [first])}


def _added_by_lowering(node: onnx.NodeProto, layers: Iterable[str]) -> bool:
    if node.op_type in _QDQ or node.domain == _PLUGIN_DOMAIN or node.name.endswith(_LOWERING_SUFFIXES):
        return True
    return any(node.name.startswith((f"{layer}.", f"{layer}_")) for layer in layers)


def _totals(rows: Iterable[LayerCost]) -> Totals:
    macs: dict[str, int] = {}
    conv = glue = qdq = n_glue = n_qdq = 0
    for row in rows:
        moved = row.bytes_read + row.bytes_written
        if row.kind == "conv":
            macs[row.compute_precision] = macs.get(row.compute_precision, 0) + row.macs
            conv += moved
        elif row.kind == "qdq":
            qdq, n_qdq = qdq + moved, n_qdq + 1
        else:
            glue, n_glue = glue + moved, n_glue + 1
    return Totals(macs, conv, glue, qdq, n_glue, n_qdq)


def _fp16_reference(g: _Graph, rows: list[LayerCost], layer_of: dict[str, str]) -> Totals:
    """The same model's FP16 graph: its own convs and glue, every activation and weight 2 bytes wide."""
    nodes = {n.name: n for n in g.model.graph.node}
    ref: list[LayerCost] = []
    for row in rows:
        node = nodes[row.name]
        if row.kind == "conv" and (row.layer or not layer_of):
            w = node.input[1]
            codes = g.producer[w].input[0] if _int8_source(g, w) is not None else w
            bias = g.elems(node.input[2]) if len(node.input) > 2 and node.input[2] else 0
            elems = g.elems(node.input[0]) + g.elems(codes) + bias + g.elems(node.output[0])
            ref.append(_fp16_row(row, "conv", row.macs, elems))
        elif row.kind == "glue" and not _added_by_lowering(node, set(layer_of.values())):
            inputs = [t for t in node.input if g.is_activation(t)]
            outputs = [t for t in node.output if g.is_activation(t)]
            ref.append(_fp16_row(row, "glue", 0, sum(g.elems(t) for t in (*inputs, *outputs))))
    return _totals(ref)


def _fp16_row(row: LayerCost, kind: Kind, macs: int, elems: int) -> LayerCost:
    return LayerCost(row.name, row.op, kind, "fp16", "fp16", "fp16", "fp16", macs, 2 * elems, 0, row.layer)


def inspect_onnx(model: onnx.ModelProto, size: tuple[int, int], source: str = "model") -> Inspection:
    """Per-node precisions, MACs and bytes of `model` at a 1 x C x H x W input (module docstring).

    Raises:
        InspectError: not one NCHW input, or shape inference fails.
    """
    g = _Graph(model, size, source)
    layer_of = _layer_of_node(model)
    rows: list[LayerCost] = []
    for node in g.model.graph.node:
        if node.op_type == "Constant" or g.folded(node):
            continue
        if node.op_type in LAYER_OPS:
            rows.append(_conv_row(g, node, layer_of.get(node.name, "")))
        elif (row := _other_row(g, node)) is not None:
            rows.append(row)
    notes = []
    if not layer_of:
        notes.append("no drq.layers map: the FP16 reference takes every conv as one of the model's own")
    return Inspection(
        source, size, tuple(rows), _totals(rows), _fp16_reference(g, rows, layer_of), tuple(notes)
    )


def load_onnx(path: Path) -> onnx.ModelProto:
    """Read an ONNX file (external data not loaded: only shapes and types are needed).

    Raises:
        InspectError: missing or not an ONNX model.
    """
    try:
        return onnx.load(str(path), load_external_data=False)
    except FileNotFoundError as err:
        raise InspectError(f"{path}: no such ONNX file") from err
    except Exception as err:  # onnx raises DecodeError variants for non-ONNX bytes
        raise InspectError(f"{path}: not a readable ONNX model ({err.__class__.__name__})") from err


# ---------------------------------------------------------------------------------------------------
# Built engines


def format_precision(text: str) -> str:
    """The precision named in an inspector "Format/Datatype" string ("Row major linear FP16 format",
    "Thirty-two wide channel vectorized row major Int8 format.", "Float", "Half")."""
    low = text.lower()
    for needle, name in (("int8", "int8"), ("fp16", "fp16"), ("half", "fp16"), ("bf16", "bf16")):
        if needle in low:
            return name
    if "fp32" in low or "float" in low:
        return "fp32"
    return "?"


def engine_layer_rows(info: str, source: str) -> tuple[dict[str, Any], ...]:
    """One dict per layer of the engine inspector's JSON: name, type, input/output precisions, tactic.

    Raises:
        InspectError: not the inspector's JSON.
    """
    try:
        layers = json.loads(info)["Layers"]
    except (ValueError, KeyError, TypeError) as err:
        raise InspectError(f"{source}: not the engine inspector's JSON layer information") from err
    rows = []
    for layer in layers:
        if isinstance(layer, str):  # built with LAYER_NAMES_ONLY: names only
            rows.append({"name": layer, "type": "?", "inputs": "?", "outputs": "?", "tactic": ""})
            continue
        rows.append(
            {
                "name": str(layer.get("Name", "?")),
                "type": str(layer.get("LayerType", "?")),
                "inputs": ",".join(
                    format_precision(str(t.get("Format/Datatype", ""))) for t in layer.get("Inputs", [])
                ),
                "outputs": ",".join(
                    format_precision(str(t.get("Format/Datatype", ""))) for t in layer.get("Outputs", [])
                ),
                "tactic": str(layer.get("TacticName", layer.get("TacticValue", ""))),
            }
        )
    return tuple(rows)


def _inspector_now(plan: Path, flavour: str, input_name: str, opt: tuple[int, ...]) -> tuple[str | None, str]:
    """Ask this machine's TensorRT for the layer information (needs the runtime to load the engine)."""
    from drq.errors import DrqError
    from engine_builder.build import engine_layers
    from serve.runtime.tensorrt_module import import_tensorrt

    try:
        trt = import_tensorrt(flavour)  # type: ignore[arg-type]
    except DrqError as err:
        return None, str(err)
    return engine_layers(trt, plan.read_bytes(), input_name, opt)


def inspect_engine(plan: Path, size: tuple[int, int] | None = None) -> Inspection:
    """The engine's layers (inspector JSON) and the cost rows of the ONNX graph it was built from.

    Raises:
        InspectError: no manifest beside the engine, or its ONNX is missing or changed.
    """
    from drq.errors import ManifestError
    from drq.manifest import load_manifest, manifest_path
    from engine_builder.build import layers_path

    if not plan.is_file():
        raise InspectError(f"{plan}: no such engine file")
    try:
        manifest = load_manifest(manifest_path(plan))
    except ManifestError as err:
        raise InspectError(f"{plan}: {err}") from err
    notes = []
    layers_file = layers_path(plan)
    if layers_file.is_file():
        info, why = layers_file.read_text(encoding="utf-8"), ""
    else:
        info, why = _inspector_now(plan, manifest.flavour, manifest.input_name, manifest.profile.opt)
    if info is None:
        notes.append(
            f"engine inspector unavailable ({why}); rows are the ONNX graph the engine was built from"
        )
    onnx_path = _built_from(plan, manifest.onnx)
    if sha256_file(onnx_path) != manifest.onnx_sha256:
        raise InspectError(
            f"{onnx_path}: changed since {plan.name} was built (sha256 differs from the manifest)"
        )
    size = size or tuple(manifest.profile.opt[2:])  # type: ignore[assignment]
    report = inspect_onnx(load_onnx(onnx_path), size, str(plan))  # type: ignore[arg-type]
    layers = engine_layer_rows(info, str(layers_file)) if info is not None else ()
    return Inspection(
        report.source,
        report.size,
        report.rows,
        report.totals,
        report.reference,
        (*report.notes, *notes),
        layers,
    )


def _built_from(plan: Path, onnx_name: str) -> Path:
    for candidate in (Path(onnx_name), plan.parent / Path(onnx_name).name):
        if candidate.is_file():
            return candidate
    raise InspectError(f"{plan}: the ONNX it was built from ({onnx_name}) is not here")


# ---------------------------------------------------------------------------------------------------
# Rendering


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f}"


def to_markdown(report: Inspection) -> str:
    """The report as Markdown: rows, totals against FP16, engine layers, notes."""
    lines = [f"# {report.source}, input {report.size[0]}x{report.size[1]}", ""]
    lines += [
        "| node | op | kind | input | weights | compute | output | MMACs | MB read | MB written |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.name} | {r.op} | {r.kind} | {r.input_precision} | {r.weight_precision} | "
            f"{r.compute_precision} | {r.output_precision} | {r.macs / 1e6:.1f} | {_mb(r.bytes_read)} | "
            f"{_mb(r.bytes_written)} |"
        )
    t, ref, q = report.totals, report.reference, ratios(report)
    by_prec = ", ".join(f"{k} {v / 1e9:.4g}" for k, v in sorted(t.conv_macs.items())) or "none"
    lines += [
        "",
        "| total | this graph | FP16 graph | ratio |",
        "|---|---|---|---|",
        f"| conv GMACs | {t.macs / 1e9:.3f} ({by_prec}) | {ref.macs / 1e9:.3f} | {q['macs']:.2f} |",
        f"| conv MB moved | {_mb(t.conv_bytes)} | {_mb(ref.conv_bytes)} | |",
        f"| glue MB moved ({t.glue_nodes} nodes; FP16: {ref.glue_nodes}) | {_mb(t.glue_bytes)} | "
        f"{_mb(ref.glue_bytes)} | |",
        f"| conv + glue MB moved | {_mb(t.conv_bytes + t.glue_bytes)} | "
        f"{_mb(ref.conv_bytes + ref.glue_bytes)} | {q['bytes']:.2f} |",
        f"| Q/DQ MB moved ({t.qdq_nodes} nodes; fused by TensorRT) | {_mb(t.qdq_bytes)} | 0.00 | |",
    ]
    if report.engine_layers:
        lines += ["", "## Engine layers (TensorRT engine inspector)", ""]
        lines += ["| layer | type | inputs | outputs | tactic |", "|---|---|---|---|---|"]
        lines += [
            f"| {r['name']} | {r['type']} | {r['inputs']} | {r['outputs']} | {r['tactic']} |"
            for r in report.engine_layers
        ]
    if report.notes:
        lines += [""] + [f"- note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"
