"""`drq quantize` end to end on IMDN x4 (shared data), and its one-line errors for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from drq.cli import main as drq
from drq.recipe import DualRegionAct, load_recipe


@pytest.mark.shared_data
def test_quantize_imdn_x4_writes_a_loadable_recipe(shared_dir: Path, tmp_path: Path, capsys, monkeypatch):
    weights = shared_dir / "sr_weights" / "imdn_x4.pth"
    out = tmp_path / "imdn_w4a4.json"
    stats = tmp_path / "stats.json"
    code = drq(
        [
            "quantize",
            "--arch",
            "imdn",
            "--weights",
            str(weights),
            "--scale",
            "4",
            "--calib",
            str(shared_dir / "sr_calib" / "bsd200"),
            "-o",
            str(out),
            "--method",
            "drq+saft",
            "--images",
            "4",
            "--crop",
            "48",
            "--epochs",
            "1",
            "--threads",
            "1",
            "--stats",
            str(stats),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "wall time" in printed
    recipe = load_recipe(out)
    assert (
        recipe.method == "drq+saft" and recipe.budget == "split" and (recipe.w_bits, recipe.a_bits) == (4, 4)
    )
    assert recipe.calibration.images == 4 and recipe.calibration.crop == 48 and recipe.calibration.epochs == 1
    assert recipe.model.arch == "imdn" and len(recipe.model.checkpoint_sha256) == 64
    acts = [layer.act for layer in recipe.layers.values()]
    assert all(isinstance(a, DualRegionAct) for a in acts)
    bits = [a.bits for a in acts]
    # head and upsampler at 8 bits, the body at 4
    assert bits[0] == 8 and bits[-1] == 8 and bits.count(4) >= 30
    assert stats.is_file()
    # The checkpoint path is relative to the recipe's folder: export works from any working directory.
    assert Path(recipe.model.checkpoint) == Path(os.path.relpath(weights, tmp_path))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert drq(["export", "--recipe", str(out), "-o", "m.onnx"]) == 0
    assert (elsewhere / "m.onnx").stat().st_size > 0


def _err(argv: list[str], capsys) -> str:
    code = drq(argv)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


def test_bad_inputs_fail_with_one_line(tmp_path: Path, capsys):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not a checkpoint")
    calib = tmp_path / "calib"
    calib.mkdir()
    base = ["quantize", "--arch", "imdn", "--scale", "4"]
    line = _err(
        base
        + ["--weights", str(tmp_path / "nope.pth"), "--calib", str(calib), "-o", str(tmp_path / "r.json")],
        capsys,
    )
    assert line == f"drq quantize: {tmp_path / 'nope.pth'}: no such checkpoint file"
    line = _err(
        base + ["--weights", str(weights), "--calib", str(tmp_path / "none"), "-o", str(tmp_path / "r.json")],
        capsys,
    )
    assert line == f"drq quantize: {tmp_path / 'none'}: no such calibration folder"
    line = _err(base + ["--weights", str(weights), "--calib", str(calib), "-o", str(weights)], capsys)
    assert line == f"drq quantize: {weights}: refusing to overwrite an input; choose another output path"
    assert weights.read_bytes() == b"not a checkpoint"
    line = _err(
        base
        + [
            "--weights",
            str(weights),
            "--calib",
            str(calib),
            "-o",
            str(tmp_path / "r.json"),
            "--method",
            "minmax",
            "--budget",
            "split",
        ],
        capsys,
    )
    assert line == "drq quantize: budget: method 'minmax' needs the 'uniform' budget, got 'split'"
    line = _err(
        base
        + [
            "--weights",
            str(weights),
            "--calib",
            str(calib),
            "-o",
            str(tmp_path / "r.json"),
            "--method",
            "bogus",
        ],
        capsys,
    )
    assert line.startswith("drq quantize: argument --method: invalid choice: 'bogus'")
    line = _err(["quantize", "--arch", "imdn"], capsys)
    assert line.startswith("drq quantize: the following arguments are required:")
    assert not (tmp_path / "r.json").exists()


def test_subprocess_error_has_no_traceback(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "drq.cli",
            "quantize",
            "--arch",
            "imdn",
            "--scale",
            "4",
            "--weights",
            str(tmp_path / "x.pth"),
            "--calib",
            str(tmp_path),
            "-o",
            str(tmp_path / "o.json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"drq quantize: {tmp_path / 'x.pth'}: no such checkpoint file"
