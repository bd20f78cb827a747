"""`drq zoo`: job planning, result files, and user errors (synthetic folders, random weights)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from calib.errors import CalibError, ModelError
from calib.zoo_command import PUBLISHED, ZooRow, main, plan_jobs, render_markdown
from drq.cli import main as drq
from drq.errors import ImageError
from drq.imaging.io import write_image


def _bench(root: Path, sets: dict[str, tuple[int, ...]], images: int = 1, lr: int = 24) -> Path:
    """A benchmark folder <set>/x<s>/{HR,LR}/img_NNN.png with random images."""
    rng = np.random.default_rng(0)
    for name, scales in sets.items():
        for s in scales:
            for i in range(1, images + 1):
                write_image(
                    root / name / f"x{s}" / "HR" / f"img_{i:03d}.png",
                    rng.integers(0, 256, (lr * s, lr * s, 3), dtype=np.uint8),
                )
                write_image(
                    root / name / f"x{s}" / "LR" / f"img_{i:03d}.png",
                    rng.integers(0, 256, (lr, lr, 3), dtype=np.uint8),
                )
    return root


def _weights(root: Path, names: tuple[str, ...]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).write_bytes(b"")
    return root


def _random_imdn_x4(folder: Path, seed: int = 0) -> Path:
    """`folder` with an ``imdn_x4.pth`` of random weights."""
    from calib.models import build_model

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(build_model("imdn", 4).state_dict(), folder / "imdn_x4.pth")
    return folder


def _imdn_argv(weights: Path, bench: Path, out: Path, *sets: str) -> list[str]:
    return [
        "--weights-dir",
        str(weights),
        "--bench-dir",
        str(bench),
        "--out",
        str(out),
        "--archs",
        "imdn",
        "--sets",
        *sets,
    ]


ALL_WEIGHTS = (
    "imdn_x2.pth",
    "imdn_x3.pth",
    "imdn_x4.pth",
    "pan_x2.pth",
    "pan_x3.pth",
    "pan_x4.pth",
    "carn_m_multiscale.pth",
    "rfdn_x4.pth",
    "rlfn_x4.pth",
    "imdn_ntire_x4.pth",
)


def test_plan_covers_every_pretrained_model_and_benchmark_scale(tmp_path):
    bench = _bench(tmp_path / "bench", {"Set5": (2, 4), "B100": (4,)}, lr=4)
    weights = _weights(tmp_path / "w", ALL_WEIGHTS)
    jobs = plan_jobs(weights, bench, ["Set5", "B100"])
    got = [(j.arch, j.scale, j.dataset, j.checkpoint.name) for j in jobs]
    x4 = (
        ("imdn", "imdn_x4.pth"),
        ("imdn_ntire", "imdn_ntire_x4.pth"),
        ("pan", "pan_x4.pth"),
        ("carn_m", "carn_m_multiscale.pth"),
        ("rfdn", "rfdn_x4.pth"),
        ("rlfn", "rlfn_x4.pth"),
    )
    x2 = (("imdn", "imdn_x2.pth"), ("pan", "pan_x2.pth"), ("carn_m", "carn_m_multiscale.pth"))
    # x4 first, each set for every model before the next set; no x3 (no benchmark folder); no B100 x2 here
    expected = [(a, 4, s, f) for s in ("Set5", "B100") for a, f in x4] + [(a, 2, "Set5", f) for a, f in x2]
    assert got == expected
    assert [(j.arch, j.scale) for j in plan_jobs(weights, bench, ["Set5"], ["pan"], [2])] == [("pan", 2)]


def test_plan_errors(tmp_path):
    bench = _bench(tmp_path / "bench", {"Set5": (4,)}, lr=4)
    weights = _weights(tmp_path / "w", ("imdn_x4.pth",))
    with pytest.raises(ModelError, match=r"/nowhere: no such weights folder$"):
        plan_jobs(tmp_path / "nowhere", bench, ["Set5"])
    with pytest.raises(ImageError, match=r"/nobench: no such benchmark folder$"):
        plan_jobs(weights, tmp_path / "nobench", ["Set5"])
    with pytest.raises(ModelError, match=r"/w/pan_x4.pth: no such checkpoint file \(pan x4\)$"):
        plan_jobs(weights, bench, ["Set5"], ["imdn", "pan"])
    with pytest.raises(ModelError, match=r"^edsr: no pretrained checkpoint in the zoo$"):
        plan_jobs(weights, bench, ["Set5"], ["edsr"])
    with pytest.raises(ModelError, match=r"^unknown arch 'vdsr'"):
        plan_jobs(weights, bench, ["Set5"], ["vdsr"])
    with pytest.raises(ImageError, match=r"/Urban100: no x<scale> folder for any selected model's scale$"):
        plan_jobs(weights, bench, ["Set5", "Urban100"], ["imdn"])


def test_markdown_starts_with_the_command_and_compares_with_published():
    rows = [
        ZooRow("imdn", 4, "Set5", 5, 32.2114, 0.8948, 5.0, "w/imdn_x4.pth", "ab" * 32, 32.21, 0.02),
        ZooRow("imdn", 4, "Urban", 3, 26.0, 0.8, 1.0, "w/imdn_x4.pth", "ab" * 32, None, None),
    ]
    md = render_markdown("drq zoo --weights-dir w --bench-dir b", rows, complete=False, threads=2)
    lines = md.splitlines()
    assert lines[0] == "`drq zoo --weights-dir w --bench-dir b`"
    assert "| imdn | x4 | Set5 | 5 | 32.2114 | 0.8948 | 32.21 | +0.00 | 0.02 | 5.0 |" in lines
    assert "| imdn | x4 | Urban | 3 | 26.0000 | 0.8000 | - | - | - | 1.0 |" in lines
    assert "Incomplete" in md and f"`imdn_x4.pth`: `{'ab' * 32}`" in md
    assert rows[0].to_dict()["within_tolerance"] is True and rows[1].to_dict()["diff"] is None
    assert (
        ZooRow("imdn", 4, "Set5", 5, 32.25, 0.9, 1.0, "c", "s", 32.21, 0.02).to_dict()["within_tolerance"]
        is False
    )


def test_published_table_is_the_shared_readme():
    assert PUBLISHED[("imdn", 4, "B100")] == (27.56, 0.02)
    assert PUBLISHED[("imdn_ntire", 4, "Set5")] == (32.25, 0.05)
    assert len(PUBLISHED) == 11


def test_zoo_run_writes_json_and_markdown(tmp_path, capsys):
    bench = _bench(tmp_path / "bench", {"Set5": (4,), "Mini": (4,)}, images=2, lr=12)
    weights = _random_imdn_x4(tmp_path / "w")
    argv = _imdn_argv(weights, bench, tmp_path / "res" / "zoo", "Set5", "Mini")
    assert main(argv) == 0
    payload = json.loads((tmp_path / "res" / "zoo.json").read_text())
    assert payload["schema_version"] == 1 and payload["complete"] is True
    assert payload["command"] == "drq zoo " + " ".join(argv)
    rows = payload["results"]
    assert [(r["arch"], r["scale"], r["dataset"], r["images"]) for r in rows] == [
        ("imdn", 4, "Set5", 2),
        ("imdn", 4, "Mini", 2),
    ]
    assert rows[0]["published"] == 32.21 and rows[0]["within_tolerance"] is False  # random weights
    assert rows[1]["published"] is None and 0 < rows[0]["psnr"] < 20
    md = (tmp_path / "res" / "zoo.md").read_text()
    assert md.startswith(f"`drq zoo {' '.join(argv)}`\n")
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and printed[0].startswith("imdn        x4 Set5")


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys):
    assert drq(["zoo"]) == 2
    err = capsys.readouterr().err
    assert err == "drq zoo: the following arguments are required: --weights-dir, --bench-dir\n"
    assert drq(["zoo", "--weights-dir", str(tmp_path / "none"), "--bench-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"drq zoo: {tmp_path / 'none'}: no such weights folder\n"
    assert drq(["zoo", "--weights-dir", str(tmp_path), "--bench-dir", str(tmp_path), "--threads", "-1"]) == 2
    assert capsys.readouterr().err == (
        "drq zoo: argument --threads: must be 0..256 (0: the library default), got -1\n"
    )


def test_resume_reuses_matching_rows_only(tmp_path, capsys):
    bench = _bench(tmp_path / "bench", {"Set5": (4,)}, images=1, lr=12)
    weights = _random_imdn_x4(tmp_path / "w")
    argv = _imdn_argv(weights, bench, tmp_path / "zoo", "Set5")
    assert main(argv) == 0
    first = json.loads((tmp_path / "zoo.json").read_text())["results"][0]
    fake = dict(first, psnr=99.0)  # a value no evaluation gives: proves the row was reused, not recomputed
    (tmp_path / "zoo.json").write_text(json.dumps({"schema_version": 1, "results": [fake]}))
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0
    row = json.loads((tmp_path / "zoo.json").read_text())["results"][0]
    assert row["psnr"] == 99.0 and row["reused"] is True
    assert "(earlier run)" in capsys.readouterr().out
    assert "measured by an earlier run" in (tmp_path / "zoo.md").read_text()
    # Another checkpoint (different sha256): measured again.
    _random_imdn_x4(weights, seed=1)
    assert main([*argv, "--resume"]) == 0
    row = json.loads((tmp_path / "zoo.json").read_text())["results"][0]
    assert row["psnr"] < 99.0 and row["reused"] is False
    (tmp_path / "zoo.json").write_text("{}")
    with pytest.raises(CalibError, match=r"zoo.json: schema_version None, expected 1$"):
        main([*argv, "--resume"])
