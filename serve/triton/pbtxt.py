"""Write Triton model configurations (`config.pbtxt`) as protobuf text format, without protobuf.

Triton reads `config.pbtxt` as the text format of its `inference.ModelConfig` message
(https://github.com/triton-inference-server/common/blob/main/protobuf/model_config.proto). The writer
is dependency-free so `drq triton-repo` needs no server package; `parse_model_config` checks a text
against the real message from `tritonclient` (tests run it on every config this package writes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from serve.triton.errors import MissingDependency, RepositoryError


@dataclass(frozen=True)
class Enum:
    """An enum value (written bare, e.g. TYPE_FP32), as opposed to a quoted string."""

    name: str


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string literal is a valid text-format string literal
    raise RepositoryError(f"config.pbtxt: cannot write a {type(value).__name__} value ({value!r})")


def _fields(message: dict[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for key, value in message.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict):
                lines += [f"{pad}{key} {{", *_fields(item, indent + 1), f"{pad}}}"]
            elif isinstance(value, list) and not isinstance(item, dict):
                lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
                break
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    return lines


def to_pbtxt(message: dict[str, Any]) -> str:
    """Protobuf text format of a nested dict: dict = message, list of dicts = repeated message (and map
    entries as {"key": ..., "value": ...}), list of scalars = repeated scalar, `Enum` = enum value."""
    return "\n".join(_fields(message, 0)) + "\n"


def parse_model_config(text: str, where: str = "config.pbtxt") -> Any:
    """Parse `text` with Triton's own `ModelConfig` protobuf (shipped by tritonclient).

    Returns:
        The `tritonclient.grpc.model_config_pb2.ModelConfig` message.

    Raises:
        MissingDependency: tritonclient (with its grpc extra) is not installed.
        RepositoryError: the text is not a valid ModelConfig.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as err:
        raise MissingDependency(
            "checking a Triton model config needs tritonclient (pip install 'tritonclient[grpc]')"
        ) from err
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as err:
        raise RepositoryError(f"{where}: not a Triton ModelConfig ({err})") from err
