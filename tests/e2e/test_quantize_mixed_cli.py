"""`drq quantize --budget mixed`: its option errors are one line, exit 2, before any work."""

from __future__ import annotations

from pathlib import Path

from drq.cli import main as drq
from drq.recipe import save_recipe
from tests.drq.test_recipe import _recipe


def _err(argv: list[str], capsys) -> str:
    code = drq(argv)
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_mixed_budget_option_errors(tmp_path: Path, capsys) -> None:
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"not a checkpoint")
    calib = tmp_path / "bsd200"
    calib.mkdir()
    out = tmp_path / "r.json"
    base = ["quantize", "--arch", "imdn", "--scale", "4", "--weights", str(weights), "--calib", str(calib)]
    base += ["-o", str(out)]
    line = _err(base + ["--budget", "mixed", "--method", "minmax"], capsys)
    assert (
        line
        == "drq quantize: --budget mixed: needs a drq method at --a-bits 8 (INT8 kernels), got minmax W4A4"
    )
    line = _err(base + ["--budget", "mixed", "--a-bits", "8", "--holdout", "0"], capsys)
    assert line == "drq quantize: --holdout: must be >= 1, got 0"
    line = _err(base + ["--budget", "mixed", "--a-bits", "8", "--max-drop-db", "-1"], capsys)
    assert line == "drq quantize: max_drop_db: must be > 0, got -1.0"
    split = save_recipe(_recipe("split"), tmp_path / "split.json")  # W4A4: not a W8A8 split recipe
    line = _err(base + ["--from-split", str(split)], capsys)
    assert line == "drq quantize: --from-split / --alternatives: options of --budget mixed"
    line = _err(
        base + ["--budget", "mixed", "--a-bits", "8", "--w-bits", "8", "--from-split", str(split)], capsys
    )
    assert line == f"drq quantize: {split}: --from-split needs a split recipe at 8 activation bits"
    assert not out.exists()
