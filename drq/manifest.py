"""The engine manifest `MODEL.plan.json`: the only contract between `engine_builder` and `serve` (torch-free).

It records what a serialized engine was built with and for, so a runner can refuse an engine that
cannot run here (another TensorRT version or GPU) with one line instead of a deserialisation crash:

    {"schema_version": 1, "engine_sha256": "...", "onnx": "imdn_qdq.onnx", "onnx_sha256": "...",
     "flavour": "tensorrt", "tensorrt_version": "10.13.0.35", "device": "NVIDIA H200",
     "compute_capability": "9.0", "lowering": "qdq", "recipe_sha256": "...", "input_name": "lr",
     "profile": {"min": [1,3,64,64], "opt": [1,3,256,256], "max": [1,3,540,960]},
     "build_seconds": 41.2, "strongly_typed": true, "fp16": false, "int8": false,
     "version_compatible": false, "hardware_compatible": false, "plugins": [], "producer": "drq 0.1.0"}
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any

from drq.artifacts import atomic_write_text, schema_version_of
from drq.errors import ManifestError

SCHEMA_VERSION = 1
PRODUCER = "drq 0.1.0"
_HEX = set("0123456789abcdef")


def manifest_path(engine: str | os.PathLike[str]) -> Path:
    """`MODEL.plan` -> `MODEL.plan.json`."""
    path = Path(engine)
    return path.with_name(path.name + ".json")


def _sha(value: Any, name: str, optional: bool) -> None:
    if not isinstance(value, str) or not (
        (optional and value == "") or (len(value) == 64 and set(value) <= _HEX)
    ):
        raise ManifestError(
            f"{name}: must be 64 lowercase hex digits{' or empty' if optional else ''}, got {value!r}"
        )


def _shape(value: Any, name: str) -> tuple[int, ...]:
    if (
        not isinstance(value, (list, tuple))
        or not value
        or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in value)
    ):
        raise ManifestError(f"{name}: must be a non-empty list of positive integers, got {value!r}")
    return tuple(value)


@dataclass(frozen=True)
class Profile:
    """One optimization profile of the engine's input (NCHW)."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            object.__setattr__(self, name, _shape(getattr(self, name), name))
        if not len(self.min) == len(self.opt) == len(self.max):
            raise ManifestError(
                f"min/opt/max: ranks differ ({len(self.min)}, {len(self.opt)}, {len(self.max)})"
            )
        if not all(a <= b <= c for a, b, c in zip(self.min, self.opt, self.max, strict=True)):
            raise ManifestError(
                f"need min <= opt <= max in every dimension, got {list(self.min)}, "
                f"{list(self.opt)}, {list(self.max)}"
            )

    def contains(self, shape: tuple[int, ...]) -> bool:
        """True when `shape` is within [min, max] in every dimension."""
        return len(shape) == len(self.min) and all(
            lo <= d <= hi for lo, d, hi in zip(self.min, shape, self.max, strict=True)
        )

    def describe(self) -> str:
        def fmt(s: tuple[int, ...]) -> str:
            return "x".join(map(str, s))

        return f"min {fmt(self.min)}, opt {fmt(self.opt)}, max {fmt(self.max)}"


@dataclass(frozen=True)
class Manifest:
    """What one engine was built from, with and for."""

    engine_sha256: str
    onnx: str
    onnx_sha256: str
    flavour: str
    tensorrt_version: str
    device: str
    compute_capability: str
    input_name: str
    profile: Profile
    build_seconds: float
    lowering: str = ""
    recipe_sha256: str = ""
    strongly_typed: bool = True
    fp16: bool = False
    int8: bool = False
    version_compatible: bool = False
    hardware_compatible: bool = False
    plugins: tuple[str, ...] = ()
    schema_version: int = SCHEMA_VERSION
    producer: str = PRODUCER

    def __post_init__(self) -> None:
        _sha(self.engine_sha256, "engine_sha256", optional=False)
        _sha(self.onnx_sha256, "onnx_sha256", optional=False)
        _sha(self.recipe_sha256, "recipe_sha256", optional=True)
        if self.flavour not in ("tensorrt", "tensorrt_rtx"):
            raise ManifestError(f"flavour: must be tensorrt or tensorrt_rtx, got {self.flavour!r}")
        for name in ("onnx", "tensorrt_version", "device", "input_name"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ManifestError(f"{name}: must be a non-empty string, got {value!r}")
        for name in ("compute_capability", "lowering", "producer"):
            if not isinstance(getattr(self, name), str):
                raise ManifestError(f"{name}: must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.profile, Profile):
            raise ManifestError(f"profile: must be a Profile, got {type(self.profile).__name__}")
        seconds = self.build_seconds
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not math.isfinite(seconds)
            or seconds < 0
        ):
            raise ManifestError(f"build_seconds: must be a finite number >= 0, got {seconds!r}")
        for name in ("strongly_typed", "fp16", "int8", "version_compatible", "hardware_compatible"):
            if not isinstance(getattr(self, name), bool):
                raise ManifestError(f"{name}: must be true or false, got {getattr(self, name)!r}")
        if not isinstance(self.plugins, tuple) or any(not isinstance(p, str) or not p for p in self.plugins):
            raise ManifestError(f"plugins: must be a list of names, got {self.plugins!r}")
        if self.schema_version != SCHEMA_VERSION:
            raise ManifestError(f"schema_version: expected {SCHEMA_VERSION}, got {self.schema_version!r}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (tuples become lists)."""
        return json.loads(json.dumps(asdict(self), allow_nan=False))


def manifest_from_dict(data: Any) -> Manifest:
    """Validate a parsed JSON object.

    Raises:
        ManifestError: naming the first offending field.
    """
    schema_version_of(data, SCHEMA_VERSION, ManifestError)
    known = {f.name for f in fields(Manifest)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ManifestError(f"top level: unknown field(s) {', '.join(unknown)}")
    required = {f.name for f in fields(Manifest) if f.default is MISSING}
    missing = sorted(required - set(data))
    if missing:
        raise ManifestError(f"top level: missing field(s) {', '.join(missing)}")
    raw_profile = data["profile"]
    if not isinstance(raw_profile, dict) or set(raw_profile) != {"min", "opt", "max"}:
        raise ManifestError("profile: must be an object with exactly min, opt, max")
    try:
        profile = Profile(**raw_profile)
    except ManifestError as err:
        raise ManifestError(f"profile.{err}") from err
    kwargs = dict(data)
    kwargs["profile"] = profile
    if isinstance(kwargs.get("plugins"), list):
        kwargs["plugins"] = tuple(kwargs["plugins"])
    return Manifest(**kwargs)


def save_manifest(manifest: Manifest, path: str | os.PathLike[str]) -> Path:
    """Write atomically as indented JSON."""
    return atomic_write_text(path, json.dumps(manifest.to_dict(), indent=1, allow_nan=False) + "\n")


def load_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read and validate a manifest.

    Raises:
        ManifestError: `<path>: <field>: <problem>`.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ManifestError(
            f"{file}: no such manifest (engines are built with `drq build`, which writes it)"
        ) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ManifestError(f"{file}: cannot read manifest ({err.__class__.__name__})") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ManifestError(f"{file}: not valid JSON (line {err.lineno}, column {err.colno})") from err
    try:
        return manifest_from_dict(data)
    except ManifestError as err:
        raise ManifestError(f"{file}: {err}") from err
