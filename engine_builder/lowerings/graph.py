"""Torch-free ONNX graph helpers shared by every lowering: layer map, naming, initializers, checks.

The float graph written by `engine_builder.export` carries, in its metadata, the map from each torch
layer's qualified name (the recipe's layer key) to the name of the Conv / ConvTranspose / Gemm node
that computes it. Lowerings find the node of a recipe layer through that map, never by parsing names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine_builder.errors import ExportError

LAYER_MAP_KEY = "drq.layers"  # JSON {qualified module name: node name (its first call)}
LAYER_CALLS_KEY = "drq.layer_calls"  # JSON {name: [node names]} for layers called more than once
SCALE_KEY = "drq.scale"  # upscaling factor, read by `drq eval --onnx`
LOWERING_KEY = "drq.lowering"
RECIPE_SHA_KEY = "drq.recipe_sha256"
INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
OPSET = 17
LAYER_OPS = ("Conv", "ConvTranspose", "Gemm")


def metadata(model: onnx.ModelProto) -> dict[str, str]:
    """The model's metadata_props as a dict."""
    return {p.key: p.value for p in model.metadata_props}


def set_metadata(model: onnx.ModelProto, values: dict[str, str]) -> None:
    """Add or replace metadata_props entries (in place)."""
    current = metadata(model)
    current.update(values)
    del model.metadata_props[:]
    for key in sorted(current):
        model.metadata_props.add(key=key, value=current[key])


def layer_map(model: onnx.ModelProto) -> dict[str, str]:
    """{qualified layer name: node name} recorded by the exporter.

    Raises:
        ExportError: the graph was not written by `engine_builder.export` (no layer map).
    """
    raw = metadata(model).get(LAYER_MAP_KEY)
    if raw is None:
        raise ExportError(
            f"model: no '{LAYER_MAP_KEY}' metadata; export the float graph with drq export first"
        )
    return dict(json.loads(raw))


def layer_nodes(model: onnx.ModelProto) -> dict[str, list[str]]:
    """{qualified layer name: every node computing it} (several for a layer called more than once).

    Raises:
        ExportError: the graph was not written by `engine_builder.export` (no layer map).
    """
    calls = json.loads(metadata(model).get(LAYER_CALLS_KEY, "{}"))
    return {name: list(calls.get(name, [node])) for name, node in layer_map(model).items()}


def opset_of(model: onnx.ModelProto) -> int:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return 0


class GraphEditor:
    """Small mutable view over a graph: unique names, initializer lookup, node insertion.

    Lowerings copy the float model, then edit it through this class; nodes appended by `add` are kept
    in a side list and spliced in front of the node they feed by `insert_before`, so the graph stays
    topologically sorted without a global re-sort.
    """

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.inits: dict[str, onnx.TensorProto] = {t.name: t for t in self.graph.initializer}
        self._names: set[str] = set(self.inits)
        self._names.update(n.name for n in self.graph.node)
        for node in self.graph.node:
            self._names.update(node.input)
            self._names.update(node.output)
        self._names.update(v.name for v in self.graph.input)
        self._pending: dict[str, list[onnx.NodeProto]] = {}
        self._removed: set[str] = set()
        self.after: dict[str, list[onnx.NodeProto]] = {}  # nodes to place right after an anchor
        for node in self.graph.node:  # anchors are found by name, so every node needs one
            if not node.name:
                node.name = self.unique(f"{node.op_type}_node")

    def unique(self, base: str) -> str:
        """A tensor or node name not used yet, derived from `base`."""
        name, i = base, 1
        while name in self._names:
            name = f"{base}_{i}"
            i += 1
        self._names.add(name)
        return name

    def node(self, name: str) -> onnx.NodeProto:
        for node in self.graph.node:
            if node.name == name:
                return node
        raise ExportError(f"model: no node named {name!r}")

    def array(self, name: str) -> np.ndarray:
        """The value of an initializer (a copy)."""
        if name not in self.inits:
            raise ExportError(f"model: {name!r} is not an initializer (weights must be constants)")
        return numpy_helper.to_array(self.inits[name]).copy()

    def add_init(self, base: str, value: np.ndarray) -> str:
        name = self.unique(base)
        tensor = numpy_helper.from_array(np.asarray(value), name)
        self.graph.initializer.append(tensor)
        self.inits[name] = tensor
        return name

    def scalar(self, base: str, value: float | int, dtype: type = np.float32) -> str:
        return self.add_init(base, np.array(value, dtype=dtype))

    def make(
        self,
        op: str,
        inputs: Iterable[str],
        base: str,
        before: onnx.NodeProto,
        outputs: int = 1,
        domain: str = "",
        **attrs: object,
    ) -> list[str]:
        """Create node `op` placed right before node `before`; returns its output names."""
        outs = [self.unique(f"{base}_out" if outputs == 1 else f"{base}_out{i}") for i in range(outputs)]
        node = helper.make_node(op, list(inputs), outs, name=self.unique(base), domain=domain, **attrs)
        self._pending.setdefault(before.name, []).append(node)
        return outs

    def place(self, node: onnx.NodeProto, before: onnx.NodeProto) -> None:
        """Queue an already built node in front of `before`."""
        self._pending.setdefault(before.name, []).append(node)

    def make1(
        self, op: str, inputs: Iterable[str], base: str, before: onnx.NodeProto, **attrs: object
    ) -> str:
        return self.make(op, inputs, base, before, **attrs)[0]

    def remove(self, node: onnx.NodeProto) -> None:
        """Drop `node` at commit (nodes anchored before it are still placed where it was)."""
        self._removed.add(node.name)

    def replace_output(self, node: onnx.NodeProto, new_out: str) -> None:
        """Let the pending node producing `new_out` write `node`'s output instead, and drop `node`."""
        old = node.output[0]
        for pending in self._pending.get(node.name, []):
            for i, name in enumerate(pending.output):
                if name == new_out:
                    pending.output[i] = old
        self.remove(node)

    def commit(self) -> None:
        """Splice the pending nodes in front of their anchors, drop removed nodes and unused initializers."""
        ordered: list[onnx.NodeProto] = []
        for node in self.graph.node:
            ordered.extend(self._pending.pop(node.name, []))
            if node.name not in self._removed:
                ordered.append(node)
            ordered.extend(self.after.pop(node.name, []))
        if self._pending or self.after:  # an anchor was removed from the graph: a lowering bug
            raise RuntimeError("pending nodes anchored to a node that is not in the graph")
        del self.graph.node[:]
        self.graph.node.extend(ordered)
        self._removed.clear()
        prune_initializers(self.model)


def prune_initializers(model: onnx.ModelProto) -> None:
    """Remove initializers no node (or graph output) reads."""
    used: set[str] = {o.name for o in model.graph.output}
    for node in model.graph.node:
        used.update(node.input)
    keep = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(keep)


def conv_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type in LAYER_OPS]


def finalize(model: onnx.ModelProto) -> onnx.ModelProto:
    """Re-infer shapes from scratch and run the full checker; returns the inferred model.

    Raises:
        ExportError: the lowered graph is invalid (a lowering bug, reported with the checker's text).
    """
    del model.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
        onnx.checker.check_model(inferred, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise ExportError(f"lowered model: invalid ONNX ({first})") from err
    return inferred


def tensor_type(model: onnx.ModelProto, name: str) -> int:
    """Element type of a graph input, output or inferred value (0 if unknown)."""
    for v in list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info):
        if v.name == name:
            return int(v.type.tensor_type.elem_type)
    for t in model.graph.initializer:
        if t.name == name:
            return int(t.data_type)
    return TensorProto.UNDEFINED
