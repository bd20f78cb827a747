"""drq.artifacts: output checks before work, normal file modes, temp clean-up, fallback on failure."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drq import artifacts
from drq.artifacts import (
    atomic_write_bytes,
    check_writable,
    check_writable_folder,
    remove_stale_temps,
    temp_path,
)
from drq.errors import ArtifactError

REPO = Path(__file__).resolve().parents[2]


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_file_gets_umask_mode(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a.json", b"{}")
        os.umask(0o027)
        atomic_write_bytes(tmp_path / "b.json", b"{}")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.json") == 0o644
    assert _mode(tmp_path / "b.json") == 0o640


def test_overwrite_keeps_existing_mode(tmp_path: Path) -> None:
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old")
    target.chmod(0o604)
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert _mode(target) == 0o604


def test_no_temp_left_and_old_file_kept_on_interrupt(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "r.json"
    target.write_bytes(b"old")

    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(artifacts.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_stale_temp_of_dead_process_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "x.plan"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    stale = temp_path(target, int(dead.stdout))
    stale.write_bytes(b"half")
    live = temp_path(target, os.getppid())  # a running process: not ours to remove
    live.write_bytes(b"busy")
    other = tmp_path / ".y.plan.drq-tmp-1"
    other.write_bytes(b"another output's temp")
    atomic_write_bytes(target, b"engine")
    assert not stale.exists()
    assert live.exists() and other.exists()
    assert remove_stale_temps(target) == []


def test_sigterm_during_write_removes_temp(tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    script = textwrap.dedent(
        f"""
        import os, sys, time
        from drq import artifacts
        real_fsync = os.fsync
        def slow_fsync(fd):
            print("writing", flush=True)
            time.sleep(30)
        artifacts.os.fsync = slow_fsync
        try:
            artifacts.atomic_write_bytes({str(target)!r}, b"x" * 1000)
        except KeyboardInterrupt:
            sys.exit(130)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "writing\n"
    assert temp_path(target, proc.pid).exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 130
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", ["folder", "under_file", "exists_no_overwrite", "read_only"])
def test_check_writable_refuses(tmp_path: Path, monkeypatch, case: str) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    if case == "folder":
        path, expected = tmp_path, "is a folder"
    elif case == "under_file":
        path, expected = plain / "sub" / "out.json", "plain.txt is a file, not a folder"
    elif case == "exists_no_overwrite":
        path, expected = plain, "exists; pass --overwrite"
    else:
        # We run as root in CI, where chmod 555 does not stop writes: simulate what os.access says
        # for a read-only folder (or a read-only file system).
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m: False if Path(p) == tmp_path else real(p, m))
        path, expected = tmp_path / "new" / "out.json", "is not writable"
    with pytest.raises(ArtifactError, match=expected) as info:
        check_writable(path, overwrite=False)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)
    assert plain.read_text() == "x"


def test_check_writable_accepts(tmp_path: Path) -> None:
    assert check_writable(tmp_path / "a" / "b" / "c.json") == tmp_path / "a" / "b" / "c.json"
    assert not (tmp_path / "a").exists()  # a check creates nothing
    (tmp_path / "c.json").write_text("x")
    check_writable(tmp_path / "c.json")
    check_writable("relative.json")


def test_check_writable_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ArtifactError, match="exists and is not a folder"):
        check_writable_folder(tmp_path / "f")
    with pytest.raises(ArtifactError, match="is a file, not a folder"):
        check_writable_folder(tmp_path / "f" / "out")
    assert check_writable_folder(tmp_path / "new") == tmp_path / "new"


def test_failed_final_write_saves_result_elsewhere(tmp_path: Path, monkeypatch) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    monkeypatch.setattr(artifacts.tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.raises(ArtifactError, match="cannot write .*; the result was saved to ") as info:
        atomic_write_bytes(blocked / "recipe.json", b"precious")
    saved = Path(str(info.value).rsplit("saved to ", 1)[1])
    assert saved.read_bytes() == b"precious"
    assert saved.name == "recipe.json"
    assert blocked.read_text() == "a file where the folder should be"
