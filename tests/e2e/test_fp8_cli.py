"""FP8 through the command line on IMDN x4 (shared data): quantize -> export -> eval in onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drq.cli import main as drq
from drq.recipe import load_recipe

pytestmark = pytest.mark.shared_data


def test_fp8_quantize_export_eval_on_set5(shared_dir: Path, set5_x4: Path, tmp_path: Path) -> None:
    recipe_path, onnx_path, scores = tmp_path / "fp8.json", tmp_path / "fp8.onnx", tmp_path / "eval.json"
    weights = shared_dir / "sr_weights" / "imdn_x4.pth"
    calib = shared_dir / "sr_calib" / "bsd200"
    quantize = [
        "quantize",
        "--arch",
        "imdn",
        "--weights",
        str(weights),
        "--scale",
        "4",
        "--calib",
        str(calib),
    ]
    assert (
        drq(
            [
                *quantize,
                "--method",
                "fp8",
                "--images",
                "4",
                "--threads",
                "1",
                "--quiet",
                "-o",
                str(recipe_path),
            ]
        )
        == 0
    )
    recipe = load_recipe(recipe_path)
    assert (recipe.method, recipe.budget, recipe.w_bits, recipe.a_bits) == ("fp8", "fp8", 8, 8)
    assert "fea_conv" not in recipe.layers  # the head stays in float
    assert drq(["export", "--recipe", str(recipe_path), "-o", str(onnx_path)]) == 0  # default lowering: fp8
    assert (
        drq(
            [
                "eval",
                "--onnx",
                str(onnx_path),
                "--data",
                str(set5_x4),
                "--threads",
                "1",
                "--quiet",
                "--json",
                str(scores),
            ]
        )
        == 0
    )
    (set5,) = json.loads(scores.read_text())["results"]
    # FP32 scores 32.21 dB (results/zoo_fp32.md); FP8 with head, upsampler and tail in float costs ~0.15.
    assert 31.9 < set5["psnr"] < 32.21
