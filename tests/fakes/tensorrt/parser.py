"""The plugin registry and the ONNX parser.

The parser dispatches every node the way onnx-tensorrt's `parseNode` (ModelImporter.cpp) does in the
three generations of that code, chosen by the module version, and records one network layer per
imported op (`network.layers`: ("builtin" | "plugin" | "function", op type or plugin id)):

* <= 10.6: builtin importer, else a local function of that name, else the FallbackPluginImporter;
* 10.7 - 10.14: as above, but a local function whose node finds a registered plugin
  (`isNodeInPluginRegistry`: op_type, attribute `plugin_version` (default "1"), `plugin_namespace`
  (default "")) is imported as the plugin;
* 10.15+, 11.x and TensorRT-RTX: a node carrying `plugin_namespace` whose plugin is registered is
  imported as the plugin first; otherwise builtin, local function, fallback.

The fallback looks the creator up by (op_type, plugin_version, plugin_namespace), then with the node's
domain as namespace (10.10+: onnx-tensorrt's FallbackPluginImporter also takes the namespace from the
node's domain); none found is the parser's "Plugin not found" error. Plugin creators live in
`get_plugin_registry()` (IPluginRegistry page: creators keyed by name, version, namespace); the
`tensorrt.plugin` stand-in registers there.
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import helper

from tests.fakes.tensorrt.logger import check_logger
from tests.fakes.tensorrt.state import Fake, bind


class PluginRegistry:
    """IPluginRegistry: creators keyed by (name, version, namespace)."""

    fake: Fake

    def __init__(self) -> None:
        self._creators: dict[tuple[str, str, str], Any] = {}

    def register_creator(self, creator: Any, plugin_namespace: str = "") -> bool:
        key = (str(creator.name), str(creator.plugin_version), str(plugin_namespace))
        if key in self._creators:
            return False
        self.fake.state.record("register_creator", *key)
        self._creators[key] = creator
        return True

    def get_creator(self, type: str, version: str, plugin_namespace: str = "") -> Any:  # noqa: A002
        return self._creators.get((type, version, plugin_namespace))

    @property
    def all_creators(self) -> list[Any]:
        return list(self._creators.values())


class ParserError:
    def __init__(self, text: str) -> None:
        self._text = text

    def __str__(self) -> str:
        return self._text

    def desc(self) -> str:
        return self._text


def _str_attr(node: onnx.NodeProto, name: str, default: str) -> str:
    for attr in node.attribute:
        if attr.name == name:
            value = helper.get_attribute_value(attr)
            return value.decode() if isinstance(value, bytes) else str(value)
    return default


class NodeImporter:
    """parseNode of one onnx-tensorrt generation, against one plugin registry."""

    def __init__(self, fake: Fake, registry: PluginRegistry) -> None:
        self.registry = registry
        self.version = fake.major_minor
        self.rtx = fake.rtx
        if fake.rtx or self.version >= (10, 15):
            self.generation = "override"
        elif self.version >= (10, 7):
            self.generation = "prefer_plugin"
        else:
            self.generation = "function_first"

    def plugin_key(self, node: onnx.NodeProto, fallback: bool) -> tuple[str, str, str] | None:
        """The registered creator a node maps to (isNodeInPluginRegistry / FallbackPluginImporter)."""
        version_attr = _str_attr(node, "plugin_version", "1")
        namespaces = [_str_attr(node, "plugin_namespace", "")]
        if fallback and (self.version >= (10, 10) or self.rtx):
            namespaces.append(node.domain)
        for namespace in namespaces:
            if self.registry.get_creator(node.op_type, version_attr, namespace) is not None:
                return node.op_type, version_attr, namespace
        return None

    def kind(self, node: onnx.NodeProto, functions: dict[str, onnx.FunctionProto]) -> str:
        builtin = node.domain in ("", "ai.onnx")
        is_plugin_node = any(a.name == "plugin_namespace" for a in node.attribute)
        if self.generation == "override" and is_plugin_node and self.plugin_key(node, False) is not None:
            return "plugin"
        if builtin:
            return "builtin"
        if node.op_type in functions:
            if self.generation == "prefer_plugin" and self.plugin_key(node, False) is not None:
                return "plugin"
            return "function"
        return "plugin"

    def import_node(
        self, node: onnx.NodeProto, functions: dict[str, onnx.FunctionProto], layers: list[tuple[str, str]]
    ) -> str | None:
        """Append the node's layers; returns an error message, or None."""
        kind = self.kind(node, functions)
        if kind == "builtin":
            layers.append(("builtin", node.op_type))
            return None
        if kind == "function":
            for inner in functions[node.op_type].node:  # LocalFunctionImporter: the body, node by node
                error = self.import_node(inner, functions, layers)
                if error:
                    return error
            return None
        key = self.plugin_key(node, True)
        if key is None:
            return (
                f"In node -1 with name: {node.name} and operator: {node.op_type} "
                '(checkFallbackPluginImporter): INVALID_NODE: creator && "Plugin not found, are the '
                'plugin name, version, and namespace correct?"'
            )
        layers.append(("plugin", f"{key[2]}::{key[0]}@{key[1]}"))
        return None


def _record_nodes(network: Any, proto: onnx.ModelProto, init: set[str]) -> None:
    """The builtin nodes with their activation tensors and ONNX types (for INT8 scales, the inspector)."""
    inferred = onnx.shape_inference.infer_shapes(proto)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        network.tensor_types[vi.name] = vi.type.tensor_type.elem_type
    for node in proto.graph.node:
        if node.domain in ("", "ai.onnx") and node.op_type != "Constant":
            inputs = [t for t in node.input if t and t not in init]
            network.nodes.append((node.name, node.op_type, inputs, list(node.output)))


class OnnxParser:
    """OnnxParser (Python API "Onnx Parser" page): parse(model, path) -> bool, num_errors, get_error."""

    fake: Fake
    importer: NodeImporter

    def __init__(self, network: Any, logger: Any) -> None:
        check_logger(logger)
        self.network, self._errors = network, []

    def parse(self, model: bytes, path: str | None = None) -> bool:
        state, mod = self.fake.state, self.fake.mod
        state.record("parse", len(model), path)
        proto = onnx.load_from_string(bytes(model))
        state.record("parsed_functions", len(proto.functions))
        if state.parse_errors:
            self._errors = [ParserError(e) for e in state.parse_errors]
            return False
        functions = {fn.name: fn for fn in proto.functions}
        for node in proto.graph.node:
            error = self.importer.import_node(node, functions, self.network.layers)
            if error:
                self._errors.append(ParserError(error))
        state.record("layers", list(self.network.layers))
        if self._errors:
            return False
        init = {t.name for t in proto.graph.initializer}
        _record_nodes(self.network, proto, init)
        for vi in proto.graph.input:
            if vi.name in init:
                continue
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else -1 for d in vi.type.tensor_type.shape.dim
            )
            dtype = mod.DataType.HALF if vi.type.tensor_type.elem_type == 10 else mod.DataType.FLOAT
            self.network.add_parsed_input(vi.name, dims, dtype)
        for vi in proto.graph.output:
            self.network.add_parsed_output(vi.name, mod.DataType.FLOAT)
        return True

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]


def add_parser(fake: Fake) -> None:
    registry = bind(PluginRegistry, fake)()
    fake.mod.get_plugin_registry = lambda: registry
    fake.mod.OnnxParser = bind(OnnxParser, fake, importer=NodeImporter(fake, registry))
