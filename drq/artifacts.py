"""Atomic file writes, output checks and content hashes shared by every artifact (recipes, manifests,
results, ONNX files, engines, images).

Every command checks its outputs with `check_writable` / `check_writable_folder` before any long work,
and writes them with `atomic_write_bytes`:

- the temp file is `.<name>.drq-tmp-<pid>` beside the target, so the next write to the same output
  removes a temp left by a killed process (its pid no longer runs), and SIGTERM during the write raises
  `KeyboardInterrupt` so the temp is removed as for Ctrl-C (SIGKILL cannot be caught: the stale-temp
  sweep covers it);
- a new file gets the mode a plain `open()` gives (0666 & ~umask), not mkstemp's 0600; a replaced file
  keeps its mode;
- a write that fails at the end (disk full, folder made read-only meanwhile) does not lose the result:
  it goes to a fresh folder under the system temp folder and the `ArtifactError` says where.

Writability is judged with `os.access(W_OK | X_OK)` on the nearest existing folder. Root passes that
check on a chmod 555 folder (as it can write there); a read-only file system fails it for everyone.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drq.errors import ArtifactError, DrqError

TEMP_MARK = ".drq-tmp-"


def _nearest_existing(path: Path) -> Path:
    """`path` or its closest ancestor that exists (the folder `mkdir(parents=True)` would start from)."""
    current = path
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def _check_parent(path: Path, shown: Path) -> None:
    anchor = _nearest_existing(path)
    if not anchor.is_dir():
        raise ArtifactError(f"{shown}: {anchor} is a file, not a folder; choose another output path")
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise ArtifactError(f"{shown}: folder {anchor} is not writable; choose another output path")


def _check_regular(target: Path) -> None:
    """A write replaces the path: never a device, FIFO or socket (`-o /dev/null` would replace the
    device node with a regular file)."""
    if os.path.exists(target) and not os.path.isfile(target):
        raise ArtifactError(f"{target}: is not a regular file (a device, pipe or socket); give a file path")


def check_writable(path: str | os.PathLike[str], overwrite: bool = True) -> Path:
    """Refuse, before any work, an output file that cannot be written; returns it as a Path.

    Raises:
        ArtifactError: `path` is an existing folder or special file (device, pipe, socket), exists
            while `overwrite` is false, lies under a regular file, or its nearest existing folder is
            not writable.
    """
    target = Path(path)
    if target.is_dir():
        raise ArtifactError(f"{target}: is a folder; give a file path")
    if os.path.lexists(target) and not overwrite:
        raise ArtifactError(f"{target}: exists; pass --overwrite to replace it")
    _check_regular(target)
    _check_parent(target.parent if str(target.parent) else Path("."), target)
    return target


def check_writable_folder(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any work, an output folder that is a file or cannot be created or written.

    Raises:
        ArtifactError: `path` is an existing file, lies under a regular file, or is not writable.
    """
    folder = Path(path)
    if os.path.lexists(folder) and not folder.is_dir():
        raise ArtifactError(f"{folder}: exists and is not a folder")
    _check_parent(folder, folder)
    return folder


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except (OverflowError, ValueError):
        return False
    return True


def temp_path(target: Path, pid: int | None = None) -> Path:
    """The temp file `atomic_write_bytes` writes `target` through: `.<name>.drq-tmp-<pid>`."""
    return target.with_name(f".{target.name}{TEMP_MARK}{os.getpid() if pid is None else pid}")


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove temps of `target` left by processes that no longer run; returns the removed paths."""
    removed = []
    prefix = f".{target.name}{TEMP_MARK}"
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            pid = entry.name[len(prefix) :]
            if entry.name.startswith(prefix) and pid.isdigit() and not _pid_running(int(pid)):
                with contextlib.suppress(OSError):
                    entry.unlink()
                    removed.append(entry)
    return removed


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """During a write, SIGTERM unwinds like Ctrl-C (so `finally` removes the temp) where nobody else
    handles SIGTERM; signal handlers can only be set from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_replace(target: Path, data: bytes) -> None:
    _check_regular(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(target)
    tmp = temp_path(target)
    tmp.unlink(missing_ok=True)  # our own pid: a temp of an earlier write in this process that failed
    try:
        with _sigterm_as_interrupt():
            # os.open applies the umask to 0o666, as open() does; mkstemp would force 0600.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileNotFoundError):
                os.chmod(tmp, stat.S_IMODE(os.stat(target).st_mode))  # --overwrite keeps the mode
            os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _describe(err: OSError) -> str:
    return err.strerror or errno.errorcode.get(err.errno or 0, err.__class__.__name__)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` through a temp file in the same folder and `os.replace`.

    A reader never sees a half-written file, and an interrupted write leaves the old file intact and no
    temp behind. If the target cannot be written, the data is saved to a new folder under the system
    temp folder instead.

    Raises:
        ArtifactError: the target is a special file, or could not be written (the message names
            where the data went).
    """
    target = Path(path)
    try:
        _write_replace(target, data)
    except OSError as err:
        reason = f"{target}: cannot write ({_describe(err)})"
        try:
            fallback = Path(tempfile.mkdtemp(prefix="drq-unsaved-")) / target.name
            _write_replace(fallback, data)
        except OSError:
            raise ArtifactError(f"{reason}; the result is lost") from err
        raise ArtifactError(f"{reason}; the result was saved to {fallback}") from err
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 text atomically (see `atomic_write_bytes`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def canonical_json(obj: Any) -> str:
    """Serialise to the canonical form hashed downstream: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_json(obj: Any) -> str:
    """The sha256 hex digest of `canonical_json(obj)`."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def schema_version_of(data: Any, current: int, error: type[DrqError]) -> int:
    """The integer `schema_version` of a parsed artifact, refused when it is not one or is newer.

    Raises:
        error: not a JSON object, no integer version, or a version newer than `current`.
    """
    if not isinstance(data, dict):
        raise error("top level: must be a JSON object")
    version = data.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise error(f"schema_version: must be an integer, got {version!r}")
    if version > current:
        raise error(f"schema_version: {version} is newer than this drq understands ({current}); upgrade drq")
    return version
