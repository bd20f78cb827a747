"""drq report: the grid plan, the Markdown table and target lines, the cache check (no models run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calib.errors import CalibError
from calib.report import _parser, plan, render_markdown
from calib.report_cache import RowConfig, load_results, merge_results, row_key
from drq.recipe import METHODS


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
    # per arch: 1 FP + 2 bits x (4 baselines + mse+gptq + every drq method x 3 budgets) + fp8 at 8 bits
    dual = [m for m in METHODS if m.startswith("drq")]
    assert len(jobs) == 2 * (1 + 2 * (5 + len(dual) * 3) + 1)
    assert {j.budget for j in jobs if j.method == "mse+gptq"} == {"uniform"}
    assert {(j.budget, j.bits) for j in jobs if j.method == "fp8"} == {("fp8", 8)}
    saft = [j for j in jobs if j.method == "drq+saft"]
    assert {(j.images, j.epochs, j.crop) for j in saft} == {(10, 2, 80)}
    assert {j.budget for j in jobs if j.method == "entropy"} == {"uniform"}
    assert len({j.name for j in jobs}) == len(jobs)


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
    assert (
        "| drq+saft (split) | 2b (two codes) | 2 | 31.70 / 0.9000 | 28.00 / 0.8000 | 32.18 / 0.9000 "
        "| 28.58 / 0.8000 |" in md
    )
    assert (
        "| FP32 | 32 (float) | 1 | 32.20 / 0.9000 | 28.60 / 0.8000 | 32.20 / 0.9000 | 28.60 / 0.8000 |" in md
    )
    assert "| minmax | b (one code) | 1 | 22.00 / 0.9000 |" in md
    assert (
        "- imdn W4A4 drq+saft (split, 8 bits/value, 2 convs): better than all 1 baselines on every set: yes; "
        "Set5 gap to FP 0.50 dB (within 0.6 dB)" in md
    )
    assert (
        "- imdn W8A8 drq+saft (split, 16 bits/value, 2 convs): largest gap to FP 0.020 dB (within 0.05 dB)"
        in md
    )
    assert "20 images x 2 epochs" in md
    # Without baseline rows (e.g. a table of the full schedule only) nothing is claimed either way.
    alone = render_markdown("drq report --out x", [rows[0], rows[2]], args, 60.0)
    assert (
        "- imdn W4A4 drq+saft (split, 8 bits/value, 2 convs): no baseline rows in this table to compare "
        "with; Set5 gap to FP 0.50 dB (within 0.6 dB)" in alone
    )


def test_equal_storage_claims_compare_one_code_rows_only():
    """W4A4 needs +0.3 dB over the best uniform row on every set; split rows sit in their own column."""
    args = _parser().parse_args(["--out", "x", "--sets", "Set5", "Set14"])
    rows = [
        _row("fp", "-", 32, 32.2, 28.6),
        _row("minmax", "uniform", 4, 27.0, 25.0),
        _row("mse", "uniform", 4, 28.0, 26.0),
        _row("drq", "b-bit", 4, 28.2, 26.1),
        _row("drq+saft", "b-bit", 4, 28.5, 26.2),  # +0.5 / +0.2: misses Set14
        _row("drq+saft", "split", 4, 29.1, 26.8),
        _row("mse", "uniform", 8, 32.0, 28.5),
        _row("drq+saft", "b-bit", 8, 32.05, 28.5),
    ]
    md = render_markdown("drq report --out x", rows, args, 1.0)
    assert "| Set5 | 28.00 (mse) | 28.20 | 28.50 | +0.50 | 29.10 | - |" in md
    assert "| Set14 | 26.00 (mse) | 26.10 | 26.20 | +0.20 | 26.80 | - |" in md
    assert (
        "- imdn W4A4 at equal storage: drq+saft (b-bit) - best uniform baseline >= 0.3 dB on every set: "
        "NO (smallest +0.20 dB over 2 of 2 sets)" in md
    )
    assert (
        "- imdn W8A8 at equal storage: drq+saft (b-bit) - best uniform baseline >= 0.0 dB on every set: "
        "yes (smallest +0.00 dB over 2 of 2 sets)" in md
    )


def _report_json(path: Path, results: dict, command: str = "drq report --out x --seed 3") -> Path:
    path.write_text(json.dumps({"command": command, "results": results}))
    return path


def _checkpoint_sha(weights_dir: Path, arch: str, scale: int) -> str:
    return f"{arch}{scale}".ljust(64, "0")


def test_cache_must_be_a_report(tmp_path: Path):
    bad = _report_json(tmp_path / "r.json", {})
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(CalibError, match="not a drq report JSON"):
        load_results(bad, _parser().parse_known_args, _checkpoint_sha)
    assert load_results(tmp_path / "missing.json", _parser().parse_known_args, _checkpoint_sha) == {}


def test_keys_hold_the_configuration_and_legacy_rows_get_theirs(tmp_path: Path):
    """A legacy row (no config) takes seed and calibration folder from its file's command line."""
    calib = tmp_path / "calib"
    calib.mkdir()
    (calib / "a.png").write_bytes(b"x")
    row = {**_row("mse", "uniform", 4, 28.0, 26.0), "images": 32, "epochs": 0}
    path = _report_json(
        tmp_path / "old.json",
        {"imdn_x4/mse/uniform/W4A4/i32c80": row},
        f"drq report --out x --seed 3 --calib {calib}",
    )
    ((key, loaded),) = load_results(path, _parser().parse_known_args, _checkpoint_sha).items()
    config = loaded["config"]
    assert (config["seed"], config["calib"], config["code_version"]) == (3, "calib", 1)
    assert config["checkpoint_sha256"] == _checkpoint_sha(tmp_path, "imdn", 4)
    assert key == row_key("imdn_x4/mse/uniform/W4A4/i32c80", RowConfig(**config))
    # another seed, another calibration folder or another checkpoint is another key
    for change in (
        {"seed": 4},
        {"calib_digest": "0" * 64},
        {"checkpoint_sha256": "f" * 64},
        {"code_version": 2},
    ):
        assert row_key("n", RowConfig(**{**config, **change})) != row_key("n", RowConfig(**config))


def test_merging_refuses_a_disagreeing_row_of_the_same_configuration(tmp_path: Path):
    calib = tmp_path / "calib"
    calib.mkdir()
    command = f"drq report --out x --calib {calib}"
    row = {**_row("mse", "uniform", 4, 28.0, 26.0), "images": 32, "epochs": 0}
    first = load_results(
        _report_json(tmp_path / "a.json", {"k": row}, command), _parser().parse_known_args, _checkpoint_sha
    )
    other = {**row, "sets": {"Set5": {"psnr": 27.0, "ssim": 0.9}}}
    second = load_results(
        _report_json(tmp_path / "b.json", {"k": other}, command), _parser().parse_known_args, _checkpoint_sha
    )
    cache = dict(first)
    merge_results(cache, first, tmp_path / "a.json")  # the same row again is fine
    with pytest.raises(CalibError, match="differs from the cached result of the same configuration"):
        merge_results(cache, second, tmp_path / "b.json")


def test_w4a4_gap_targets_cover_every_dual_region_method_per_network_and_budget():
    args = _parser().parse_args(["--out", "x", "--sets", "Set5"])
    rows = [
        _row("fp", "-", 32, 32.2, 28.6),
        _row("drq+gptq", "split", 4, 31.7, 28.0),
        _row("drq+gptq+saft", "b-bit", 4, 30.6, 27.0),
        _row("drq+gptq", "split", 8, 32.1, 28.5),  # not W4A4: no gap target
        _row("minmax", "uniform", 4, 22.0, 21.0),  # not dual-region: no gap target
    ]
    md = render_markdown("drq report --out x", rows, args, 1.0)
    assert (
        "- imdn W4A4 drq+gptq (split, 8 bits/value, 2 convs): Set5 gap to FP 0.50 dB (target <= 0.6: met)"
        in md
    )
    assert (
        "- imdn W4A4 drq+gptq+saft (b-bit, 4 bits/value, 1 conv): Set5 gap to FP 1.60 dB "
        "(target <= 1.5: missed)" in md
    )
    assert md.count("(target <=") == 2
