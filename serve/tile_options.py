"""How `drq upscale` and `drq eval --onnx` choose tile size, overlap and batch (the tiling rule).

- Tile: ``--tile N`` (LR pixels, square) if given; for an engine, its optimization profile's max
  ``H x W`` (manifest ``profile.max``), since the engine cannot run anything larger; for an ONNX model,
  `DEFAULT_TILE` (256: with IMDN x4 on onnxruntime a 256 tile holds about 300 MB of activations, a
  512 one about 1.2 GB). An image whose LR height and width both fit the tile runs whole, unchanged.
- Overlap: ``--overlap N`` if given; else the network's receptive-field radius read from the ONNX graph
  (`serve.receptive_field`; for an engine, the ONNX file named in its manifest, beside the engine),
  capped at a quarter of the tile's shorter side so the tile stride stays at least half the tile
  (at most 4x the work). Within the cap, models without global statistics (carn_m, imdn_ntire, pan)
  tile bit-exactly; see `results/tiling/` for the others.
- Batch: ``--batch N`` tiles per runner call (default 1); for an engine at most its profile's max N.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from serve.errors import ServeError
from serve.receptive_field import ReceptiveField, ReceptiveFieldError, receptive_field

DEFAULT_TILE = 256


@dataclass(frozen=True)
class TileSettings:
    """The tiling of one model run.

    Attributes:
        tile: tile ``(height, width)`` in LR pixels.
        overlap: LR pixels of context kept around each tile's kept region.
        batch: tiles per runner call.
        field: the model's receptive field, when it was read from its graph.
        note: a one-line remark for the user ("" when there is nothing to say).
    """

    tile: tuple[int, int]
    overlap: int
    batch: int
    field: ReceptiveField | None = None
    note: str = ""


def add_tiling_arguments(parser: argparse.ArgumentParser) -> None:
    """--tile, --overlap and --batch, with the rule above in their help."""
    group = parser.add_argument_group("tiling (images larger than the tile are split, run and stitched)")
    group.add_argument(
        "--tile",
        type=int,
        help=f"tile side in LR pixels (default: an engine's profile max, else {DEFAULT_TILE} for ONNX)",
    )
    group.add_argument(
        "--overlap",
        type=int,
        help="LR pixels of context around each tile (default: the receptive field from the ONNX graph, "
        "at most a quarter of the tile)",
    )
    group.add_argument("--batch", type=int, default=1, help="tiles per runner call (default 1)")


def _check_positive(name: str, value: int | None, minimum: int) -> None:
    if value is not None and value < minimum:
        raise ServeError(f"--{name}: must be >= {minimum}, got {value}")


def _default_overlap(onnx_path: Path, tile: tuple[int, int]) -> tuple[int, ReceptiveField, str]:
    import onnx

    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as err:  # onnx raises several unrelated types for a bad file
        raise ServeError(f"{onnx_path}: not a readable ONNX model ({err.__class__.__name__})") from err
    try:
        field = receptive_field(model)
    except ReceptiveFieldError as err:
        raise ServeError(f"{onnx_path}: {err}") from err
    cap = min(tile) // 4
    if field.radius <= cap:
        return field.radius, field, ""
    note = (
        f"overlap capped at {cap} (a quarter of the tile) below the receptive field {field.radius}: "
        "tiled output may differ from the whole image; a larger --tile avoids it"
    )
    return cap, field, note


def resolve_tiling(
    args: argparse.Namespace, onnx_path: Path | None, profile_max: tuple[int, ...] | None = None
) -> TileSettings:
    """Apply the tiling rule (module docstring) to parsed --tile/--overlap/--batch.

    Args:
        args: the parsed command line (`add_tiling_arguments`).
        onnx_path: the model's ONNX graph, for the receptive field (None: --overlap is required).
        profile_max: an engine's profile max shape ``(N, C, H, W)``, or None for an ONNX model.

    Raises:
        ServeError: a value is out of range, the tile exceeds the engine's profile, or the overlap
            cannot be derived.
    """
    _check_positive("tile", args.tile, 1)
    _check_positive("overlap", args.overlap, 0)
    _check_positive("batch", args.batch, 1)
    batch = args.batch
    if profile_max is not None:
        max_h, max_w = profile_max[2], profile_max[3]
        if args.tile is not None and (args.tile > max_h or args.tile > max_w):
            raise ServeError(f"--tile {args.tile}: larger than the engine's profile max {max_w}x{max_h}")
        tile = (args.tile, args.tile) if args.tile is not None else (max_h, max_w)
        batch = min(batch, profile_max[0])
    else:
        side = args.tile or DEFAULT_TILE
        tile = (side, side)
    if args.overlap is not None:
        return TileSettings(tile, args.overlap, batch)
    if onnx_path is None or not onnx_path.is_file():
        raise ServeError(
            f"{onnx_path or 'engine'}: no ONNX graph to read the receptive field from; pass --overlap"
        )
    overlap, field, note = _default_overlap(onnx_path, tile)
    return TileSettings(tile, overlap, batch, field, note)
