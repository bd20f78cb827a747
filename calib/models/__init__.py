"""The SR model zoo (torch): architecture registry, builders and strict checkpoint loading.

Every model takes RGB images in [0, 1] (float32 NCHW) and returns [0, 1] at `scale` times the size.
"""

from __future__ import annotations

from calib.models.registry import ARCHS, ArchSpec, LoadedModel, build_model, get_arch, load_pretrained

__all__ = ["ARCHS", "ArchSpec", "LoadedModel", "build_model", "get_arch", "load_pretrained"]
