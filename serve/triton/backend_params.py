"""Read the `parameters` of a python-backend model's config (strings in Triton's JSON form)."""

from __future__ import annotations

import json
from typing import Any


class ParameterError(ValueError):
    """A model config lacks a parameter or holds one of the wrong form (a broken repository)."""


def model_parameters(args: dict[str, Any]) -> dict[str, str]:
    """`{key: string_value}` of the model config that Triton passes to `initialize(args)`."""
    config = json.loads(args["model_config"])
    return {key: str(value.get("string_value", "")) for key, value in config.get("parameters", {}).items()}


def int_parameter(params: dict[str, str], key: str, minimum: int) -> int:
    """An integer parameter >= `minimum`.

    Raises:
        ParameterError: missing, not an integer, or too small.
    """
    text = params.get(key)
    if text is None or not text.strip().lstrip("-").isdigit() or int(text) < minimum:
        raise ParameterError(f"config.pbtxt: parameter {key!r} must be an integer >= {minimum}, got {text!r}")
    return int(text)


def str_parameter(params: dict[str, str], key: str) -> str:
    """A non-empty string parameter.

    Raises:
        ParameterError: missing or empty.
    """
    text = params.get(key, "")
    if not text:
        raise ParameterError(f"config.pbtxt: parameter {key!r} is missing")
    return text
