"""Checks that an ONNX model is an image-to-image SR model before any image reaches it (torch-free)."""

from __future__ import annotations

from pathlib import Path

from serve.errors import RunnerError


def check_image_input(path: Path, name: str, shape: list[object]) -> None:
    """Refuse a model whose one input is not ``N x 3 x H x W`` (dynamic dims are fine).

    Raises:
        RunnerError: ``<path>: input 'x' has shape [1, 1, 'H', 'W']; expected N x 3 x H x W (RGB)``.
    """
    channels = shape[1] if len(shape) == 4 else None
    if len(shape) != 4 or (isinstance(channels, int) and channels != 3):
        shown = [d if d is not None else "?" for d in shape]
        raise RunnerError(f"{path}: input {name!r} has shape {shown}; expected N x 3 x H x W (RGB)")
