"""Manifest JSON round trip and field-named validation errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from drq.manifest import (
    Manifest,
    ManifestError,
    Profile,
    load_manifest,
    manifest_path,
    save_manifest,
)


def sample() -> Manifest:
    return Manifest(
        engine_sha256="a" * 64,
        onnx="m.onnx",
        onnx_sha256="b" * 64,
        flavour="tensorrt",
        tensorrt_version="10.13.0.35",
        device="NVIDIA H200",
        compute_capability="9.0",
        input_name="lr",
        profile=Profile((1, 3, 64, 64), (1, 3, 256, 256), (1, 3, 540, 960)),
        build_seconds=12.5,
        lowering="qdq",
        recipe_sha256="c" * 64,
        plugins=("drq::DualRegionDequant",),
    )


def test_round_trip(tmp_path: Path):
    path = save_manifest(sample(), manifest_path(tmp_path / "m.plan"))
    assert path.name == "m.plan.json"
    assert load_manifest(path) == sample()
    assert json.loads(path.read_text())["profile"]["max"] == [1, 3, 540, 960]


def test_profile_contains_and_describes():
    p = sample().profile
    assert p.contains((1, 3, 64, 64)) and p.contains((1, 3, 540, 960)) and p.contains((1, 3, 100, 900))
    assert not p.contains((1, 3, 541, 960)) and not p.contains((1, 3, 63, 64)) and not p.contains((3, 64, 64))
    assert p.describe() == "min 1x3x64x64, opt 1x3x256x256, max 1x3x540x960"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"engine_sha256": "xyz"}, "engine_sha256: must be 64 lowercase hex digits, got 'xyz'"),
        ({"recipe_sha256": "A" * 64}, "recipe_sha256: must be 64 lowercase hex digits or empty"),
        ({"flavour": "onnxruntime"}, "flavour: must be tensorrt or tensorrt_rtx, got 'onnxruntime'"),
        ({"device": ""}, "device: must be a non-empty string, got ''"),
        ({"build_seconds": -1}, "build_seconds: must be a finite number >= 0, got -1"),
        ({"fp16": "yes"}, "fp16: must be true or false, got 'yes'"),
        ({"plugins": ["drq", ""]}, "plugins: must be a list of names"),
        (
            {"profile": {"min": [1, 3, 8, 8], "opt": [1, 3, 4, 4], "max": [1, 3, 16, 16]}},
            "profile.need min <= opt <= max in every dimension",
        ),
        (
            {"profile": {"min": [1, 3, 8, 8], "max": [1, 3, 16, 16]}},
            "profile: must be an object with exactly min, opt, max",
        ),
        (
            {"profile": {"min": [1, 3, 0, 8], "opt": [1, 3, 4, 4], "max": [1, 3, 16, 16]}},
            "profile.min: must be a non-empty list of positive integers",
        ),
        ({"schema_version": 2}, "schema_version: 2 is newer than this drq understands (1); upgrade drq"),
        ({"schema_version": 0}, "schema_version: expected 1, got 0"),
        ({"colour": "red"}, "top level: unknown field(s) colour"),
    ],
)
def test_validation_names_the_field(tmp_path: Path, edit: dict, message: str):
    data = {**sample().to_dict(), **edit}
    path = tmp_path / "m.plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_missing_fields_and_files(tmp_path: Path):
    data = sample().to_dict()
    del data["device"], data["onnx"]
    path = tmp_path / "m.plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=r"top level: missing field\(s\) device, onnx"):
        load_manifest(path)
    path.write_text("{")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(path)
    with pytest.raises(
        ManifestError, match=r"none.plan.json: no such manifest \(engines are built with `drq build`"
    ):
        load_manifest(tmp_path / "none.plan.json")


def test_constructor_validates_too():
    with pytest.raises(ManifestError, match="input_name: must be a non-empty string"):
        replace(sample(), input_name="")
