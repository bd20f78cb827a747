"""Cache keys of `drq report`: everything that changes a result is in the key, and rows never mix.

A result row is reused only when its whole configuration matches the job: model and checkpoint
(sha256), calibration folder (its name and a digest of its file list), seed, crop, images, epochs,
batch, breakpoint/format search, evaluation protocol and `CODE_VERSION`. The key is the readable job
name plus a digest of that configuration, so two configurations can never share a key, and a table
only renders rows whose configuration is the one the invocation asked for.

JSON files of other runs are read only when named (`--merge`), never by globbing the output folder,
and a merged row that disagrees with a cached row of the same configuration is refused.

Rows written before configurations were recorded (no `config` field) are upgraded on load from the
command line stored in their file (its seed, calibration folder and weights folder) and the checkpoint
as it is now; they count as `CODE_VERSION` 1.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from calib.errors import CalibError
from drq.errors import DrqError

CODE_VERSION = 1
"""Bump when a change to calib/ or drq/imaging changes any number of an existing configuration."""
BATCH = 2
"""Calibration batch size of every report row."""
EVAL_PROTOCOL = "psnr-ssim-y-border-scale"
"""drq.imaging.evaluate: PSNR/SSIM on Y, `scale` pixels of border cropped."""


@dataclass(frozen=True)
class RowConfig:
    """Everything besides the code that determines one result row."""

    arch: str
    scale: int
    method: str
    budget: str
    bits: int
    checkpoint_sha256: str
    calib: str  # calibration folder name
    calib_digest: str  # sha256 of its sorted (file name, size) list
    seed: int
    images: int
    crop: int
    epochs: int
    batch: int
    bp_init: str  # "mse" (split breakpoint / b-bit format search) or "percentile"
    eval: str = EVAL_PROTOCOL
    code_version: int = CODE_VERSION

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def row_key(name: str, config: RowConfig) -> str:
    """The cache key: a readable job name and the digest of its configuration."""
    return f"{name}#{config.digest()}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def folder_digest(folder: Path) -> str:
    """sha256 over the sorted (relative name, size) of every file in `folder` (cheap, content-free)."""
    entries = sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*") if p.is_file())
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CalibError(
            f"{path}: cannot read the cached results ({err.__class__.__name__}); move it away"
        ) from err
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
        raise CalibError(f"{path}: not a drq report JSON (no 'results' object)")
    return data


@dataclass(frozen=True)
class LegacyContext:
    """What a file's stored command says about rows that lack a `config` (seed, folders)."""

    seed: int
    calib: Path
    weights_dir: Path


def _legacy_context(path: Path, command: Any, parse: Any) -> LegacyContext:
    if not isinstance(command, str) or not command.startswith("drq report "):
        raise CalibError(f"{path}: rows without a config and no 'drq report' command to recover it from")
    try:
        words = shlex.split(command)
    except ValueError:  # stored unquoted: a --note with an apostrophe
        words = command.split()
    try:
        # Only --seed, --calib and --weights-dir matter; an unquoted --note leaves stray words behind.
        args, _ = parse(words[2:])
    except (SystemExit, DrqError) as err:
        raise CalibError(f"{path}: cannot parse the stored command to recover the rows' config") from err
    return LegacyContext(args.seed, args.calib, args.weights_dir)


def _legacy_config(row: dict[str, Any], ctx: LegacyContext, checkpoints: Any) -> RowConfig:
    fp = row["method"] == "fp"
    return RowConfig(
        arch=row["arch"],
        scale=int(row["scale"]),
        method=row["method"],
        budget=row["budget"] if not fp else "-",
        bits=int(row["bits"]) if not fp else 32,
        checkpoint_sha256=checkpoints(ctx.weights_dir, row["arch"], int(row["scale"])),
        calib="" if fp else ctx.calib.name,
        calib_digest="" if fp else folder_digest(ctx.calib),
        seed=0 if fp else ctx.seed,
        images=int(row.get("images", 0)),
        crop=int(row.get("crop", 0)) if not fp else 0,
        epochs=int(row.get("epochs", 0)),
        batch=0 if fp else BATCH,
        bp_init=row.get("bp_init", "percentile") if not fp else "-",
        code_version=1,
    )


def load_results(path: Path, parse: Any, checkpoints: Any) -> dict[str, dict[str, Any]]:
    """Rows of one report JSON keyed by `row_key`; a missing file gives {}.

    `parse` parses a `drq report` argument list (for legacy rows), `checkpoints(weights_dir, arch,
    scale)` returns a checkpoint's sha256.

    Raises:
        CalibError: unreadable or not a report JSON, or legacy rows whose config cannot be recovered.
    """
    if not path.is_file():
        return {}
    data = _read(path)
    out: dict[str, dict[str, Any]] = {}
    ctx: LegacyContext | None = None
    for name, row in data["results"].items():
        if not isinstance(row, dict):
            raise CalibError(f"{path}: result {name!r} is not an object")
        if "config" not in row:
            ctx = ctx or _legacy_context(path, data.get("command"), parse)
            row = {**row, "config": asdict(_legacy_config(row, ctx, checkpoints))}
        config = RowConfig(**row["config"])
        out[row_key(name.split("#", 1)[0], config)] = row
    return out


def merge_results(cache: dict[str, dict[str, Any]], extra: dict[str, dict[str, Any]], source: Path) -> None:
    """Add `extra` to `cache`; the same configuration with other scores is refused.

    Raises:
        CalibError: a row of `source` has the key of a cached row but different scores.
    """
    for key, row in extra.items():
        known = cache.get(key)
        if known is not None and known.get("sets") != row.get("sets"):
            raise CalibError(
                f"{source}: result {key} differs from the cached result of the same configuration; "
                "remove one of them"
            )
        cache[key] = row
