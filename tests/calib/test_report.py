"""drq report: the grid plan, the Markdown table and target lines, the cache check (no models run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calib.errors import CalibError
from calib.report import _load_cache, _parser, plan, render_markdown


def test_plan_covers_the_grid():
    args = _parser().parse_args(
        [
            "--out",
            "x",
            "--archs",
            "imdn",
            "pan",
            "--bits",
            "4",
            "8",
            "--images",
            "50",
            "--ft-images",
            "10",
            "--epochs",
            "2",
        ]
    )
    jobs = plan(args)
    # per arch: 1 FP + 2 bits x (4 baselines + 3 drq methods x 3 budgets)
    assert len(jobs) == 2 * (1 + 2 * (4 + 3 * 3))
    saft = [j for j in jobs if j.method == "drq+saft"]
    assert {(j.images, j.epochs, j.crop) for j in saft} == {(10, 2, 80)}
    assert {j.budget for j in jobs if j.method == "entropy"} == {"uniform"}
    assert len({j.key for j in jobs}) == len(jobs)


def _row(method, budget, bits, set5, set14):
    return {
        "arch": "imdn",
        "scale": 4,
        "method": method,
        "budget": budget,
        "bits": bits,
        "crop": 80,
        "sets": {"Set5": {"psnr": set5, "ssim": 0.9}, "Set14": {"psnr": set14, "ssim": 0.8}},
    }


def test_markdown_has_command_table_and_targets():
    args = _parser().parse_args(["--out", "x", "--sets", "Set5", "Set14", "--images", "20", "--epochs", "2"])
    rows = [
        _row("fp", "-", 32, 32.2, 28.6),
        _row("minmax", "uniform", 4, 22.0, 21.0),
        _row("drq+saft", "split", 4, 31.7, 28.0),
        _row("drq+saft", "split", 8, 32.18, 28.58),
    ]
    md = render_markdown("drq report --out x", rows, args, 60.0)
    assert md.splitlines()[0] == "`drq report --out x`"
    assert "| drq+saft (split) | 31.70 / 0.9000 | 28.00 / 0.8000 | 32.18 / 0.9000 | 28.58 / 0.8000 |" in md
    assert "| FP32 | 32.20 / 0.9000 | 28.60 / 0.8000 | 32.20 / 0.9000 | 28.60 / 0.8000 |" in md
    assert (
        "- imdn W4A4 drq+saft (split): better than all 1 baselines on every set: yes; "
        "Set5 gap to FP 0.50 dB (within 0.6 dB)" in md
    )
    assert "- imdn W8A8 drq+saft (split): largest gap to FP 0.020 dB (within 0.05 dB)" in md
    assert "20 images x 2 epochs" in md
    # Without baseline rows (e.g. a table of the full schedule only) nothing is claimed either way.
    alone = render_markdown("drq report --out x", [rows[0], rows[2]], args, 60.0)
    assert (
        "- imdn W4A4 drq+saft (split): no baseline rows in this table to compare with; "
        "Set5 gap to FP 0.50 dB (within 0.6 dB)" in alone
    )


def test_cache_must_be_a_report(tmp_path: Path):
    bad = tmp_path / "r.json"
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(CalibError, match="not a drq report JSON"):
        _load_cache(bad)
    assert _load_cache(tmp_path / "missing.json") == {}
