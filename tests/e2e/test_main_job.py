"""The README's main job (IMDN x4 W8A8 min/max -> qdq ONNX -> onnxruntime eval), reduced to 8
calibration images and Set5, with its numbers asserted.

Measured on this repository's machine (2 shared CPU cores, torch 2.13 CPU, onnxruntime 1.32):
Set5 PSNR-Y 32.0581 dB, SSIM-Y 0.8895 with --threads 1 (32.0550 / 0.8894 with 2 threads: the
calibration's float sums change with the thread count). The full job (100 images) scores 32.0424 dB
and FP32 32.2114 dB (README). Tolerance 0.02 dB / 0.002 SSIM: wider than the thread-count spread,
far narrower than any quantization regression (a W8A8 bug costs dB, not hundredths).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drq.cli import main

MEASURED_PSNR_Y = 32.0581
MEASURED_SSIM_Y = 0.8895
FP32_PSNR_Y = 32.2114  # results/zoo_fp32.md


@pytest.mark.shared_data
@pytest.mark.slow
def test_reduced_main_job_scores_what_was_measured(shared_dir: Path, tmp_path: Path) -> None:
    recipe, model, scores = (
        tmp_path / "imdn_x4_int8.json",
        tmp_path / "imdn_x4_int8_qdq.onnx",
        tmp_path / "s.json",
    )
    quantize = ["quantize", "--arch", "imdn", "--weights", str(shared_dir / "sr_weights" / "imdn_x4.pth")]
    quantize += ["--scale", "4", "--calib", str(shared_dir / "sr_calib" / "bsd200"), "--method", "minmax"]
    quantize += ["--w-bits", "8", "--a-bits", "8", "-o", str(recipe), "--images", "8", "--threads", "1"]
    assert main([*quantize, "--quiet"]) == 0
    assert main(["export", "--recipe", str(recipe), "--lowering", "qdq", "-o", str(model)]) == 0
    data = str(shared_dir / "sr_bench" / "Set5" / "x4")
    assert (
        main(
            ["eval", "--onnx", str(model), "--data", data, "--threads", "1", "--quiet", "--json", str(scores)]
        )
        == 0
    )
    (set5,) = json.loads(scores.read_text())["results"]
    assert set5["images"] == 5
    assert set5["psnr"] == pytest.approx(MEASURED_PSNR_Y, abs=0.02)
    assert set5["ssim"] == pytest.approx(MEASURED_SSIM_Y, abs=0.002)
    assert 0 < FP32_PSNR_Y - set5["psnr"] < 0.25  # INT8 costs a little, as the README says
