"""`drq kernels`: PTX folder from the command line; user errors are one line and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from drq.cli import main as drq
from drq.cli_args import UsageError
from plugins.cli import main


def test_kernels_out_writes_ptx_and_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("triton")
    assert main(["--out", str(tmp_path), "--arch", "sm_90"]) == 0
    assert len(list(tmp_path.glob("*_sm90.ptx"))) == 4
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {e["arch"] for e in manifest["kernels"]} == {90}
    assert "wrote 4 PTX kernels for sm_90" in capsys.readouterr().out


def test_bad_arch_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert drq(["kernels", "--out", str(tmp_path), "--arch", "hopper"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "drq kernels: --arch 'hopper': expected a compute capability such as sm_90 or 90"


def test_nothing_to_do_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError):
        main([])
    assert drq(["kernels"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
