"""Tiled super-resolution of any image size with bounded memory (torch-free: numpy only).

API (used by `drq upscale`, `drq eval --onnx` and the Triton python-backend model):

- ``plan_tiles(height, width, tile, overlap) -> list[Tile]``: where the tiles of an ``height x width``
  LR image go. ``tile`` is the tile size in LR pixels (an int, or ``(tile_height, tile_width)``), and
  ``overlap`` the context in LR pixels each tile carries beyond the part of it that is kept (the
  network's receptive-field radius, `serve.receptive_field`). Every tile of one plan has the same shape,
  so the tiles can be run as one batch: tiles are laid out with a stride of ``tile - 2 * overlap``, and the
  last tile of a row or column is shifted inward to end at the image border instead of hanging over it.
  An axis no longer than the tile gets one tile spanning it, so an image no larger than the tile runs
  whole (one tile of the image's own shape). The kept regions partition the image: the cut between two
  neighbouring tiles lies in the middle of their shared part, so each kept pixel is at least ``overlap``
  pixels from its tile's edge unless that edge is the image border.
- ``upscale_tiled(run_batch, image, scale, tile, overlap, batch=1) -> uint8 array``: runs the tiles of a
  uint8 ``H x W x 3`` RGB image through ``run_batch`` in batches of at most ``batch`` tiles and stitches
  the kept regions into a uint8 ``(scale*H) x (scale*W) x 3`` image. ``run_batch`` is any runner's call
  (`serve.runtime` ``OrtRunner.run`` / ``TrtRunner.run``, or a Triton client call): it takes float32
  ``N x 3 x th x tw`` in [0, 1] (``v / 255``, as `drq.imaging.io.to_nchw_float`) and returns float32
  ``N x 3 x scale*th x scale*tw``. Each tile's kept region is converted to uint8 as soon as it comes back,
  exactly as `drq.imaging.io.from_nchw_float` converts a whole output (clamp to [0, 1], times 255,
  round half to even), so memory is the uint8 output plus one batch of tiles, never the float output.
- ``iter_tiled(...)`` yields the kept regions as uint8 blocks with their output position, for callers
  that paste them elsewhere; ``upscale_tiled_pil(...)`` pastes them into a Pillow image (what a PNG
  encoder needs, so the output is held once: `drq upscale` uses it).

Exactness: when the network's output at a pixel depends only on the input within ``r`` LR pixels of it
(convolutions, pixel shuffles, element-wise ops), and ``overlap >= r``, the tiled output equals the
whole-image output bit for bit (given a runtime whose per-pixel arithmetic does not depend on the input
size). Networks with whole-feature-map statistics (IMDN's contrast-aware channel attention, global
pooling) see each tile's statistics instead, so tiling changes their output; `results/tiling/` measures
by how much.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image

from drq.imaging.io import check_rgb_uint8, from_nchw_float
from serve.errors import ServeError


class TilingError(ServeError):
    """A tile plan is impossible (tile too small for its overlap), or a runner returned the wrong shape."""


@dataclass(frozen=True)
class Tile:
    """One tile of a plan, in LR pixel coordinates (rows ``top:top+height``, columns ``left:left+width``).

    The kept region is rows ``keep_top:keep_bottom`` and columns ``keep_left:keep_right`` of the image
    (absolute coordinates, inside the tile).
    """

    top: int
    left: int
    height: int
    width: int
    keep_top: int
    keep_bottom: int
    keep_left: int
    keep_right: int


def _axis_spans(size: int, tile: int, overlap: int, axis: str) -> list[tuple[int, int, int]]:
    """(start, keep_start, keep_end) of each tile along one axis of length `size`."""
    if size <= tile:
        return [(0, 0, size)]
    stride = tile - 2 * overlap
    if stride < 1:
        raise TilingError(
            f"tile {axis} {tile}: must exceed twice the overlap {overlap} (tile > {2 * overlap}); "
            "use a larger --tile or a smaller --overlap"
        )
    starts = list(range(0, size - tile, stride)) + [size - tile]
    # Midway through the part two neighbours share: at least `overlap` inside both of them.
    cuts = [(starts[i] + starts[i + 1] + tile) // 2 for i in range(len(starts) - 1)]
    bounds = [0, *cuts, size]
    return [(start, bounds[i], bounds[i + 1]) for i, start in enumerate(starts)]


def _pair(tile: int | tuple[int, int]) -> tuple[int, int]:
    pair = (tile, tile) if isinstance(tile, int) else tuple(tile)
    if len(pair) != 2 or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in pair):
        raise TilingError(f"tile: must be a positive size or (height, width), got {tile!r}")
    return pair  # type: ignore[return-value]


def plan_tiles(height: int, width: int, tile: int | tuple[int, int], overlap: int) -> list[Tile]:
    """The tiles covering an ``height x width`` image, row by row (layout rules in the module docstring).

    Raises:
        TilingError: a size is not positive, the overlap is negative, or an axis needing several tiles
            has ``tile <= 2 * overlap``.
    """
    tile_h, tile_w = _pair(tile)
    if height < 1 or width < 1:
        raise TilingError(f"image: must have a positive size, got {width}x{height}")
    if overlap < 0:
        raise TilingError(f"overlap: must be >= 0, got {overlap}")
    rows = _axis_spans(height, tile_h, overlap, "height")
    cols = _axis_spans(width, tile_w, overlap, "width")
    shape_h, shape_w = min(tile_h, height), min(tile_w, width)
    return [
        Tile(top, left, shape_h, shape_w, keep_top, keep_bottom, keep_left, keep_right)
        for top, keep_top, keep_bottom in rows
        for left, keep_left, keep_right in cols
    ]


def _tile_batch(image: np.ndarray, tiles: list[Tile]) -> np.ndarray:
    """Float32 ``N x 3 x h x w`` in [0, 1] of the tiles, computed as `to_nchw_float` does."""
    first = tiles[0]
    batch = np.empty((len(tiles), 3, first.height, first.width), np.float32)
    for i, t in enumerate(tiles):
        crop = image[t.top : t.top + t.height, t.left : t.left + t.width]
        batch[i] = crop.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    return batch


def _check_output(out: np.ndarray, tiles: list[Tile], scale: int) -> np.ndarray:
    out = np.asarray(out)
    first = tiles[0]
    expected = (len(tiles), 3, first.height * scale, first.width * scale)
    if out.shape != expected:
        raise TilingError(
            f"runner: returned shape {tuple(out.shape)} for {len(tiles)} tiles of "
            f"{first.width}x{first.height} at x{scale}; expected {expected}"
        )
    return out


def _infer_scale(out: np.ndarray, tiles: list[Tile]) -> int:
    """The upscaling factor a runner applied to the first batch (its output over its input size)."""
    first = tiles[0]
    out_h, out_w = np.shape(out)[-2:] if np.ndim(out) == 4 else (0, 0)
    scale = out_h // first.height
    if scale < 1 or out_h != scale * first.height or out_w != scale * first.width:
        raise TilingError(
            f"runner: returned shape {tuple(np.shape(out))} for {len(tiles)} tiles of "
            f"{first.width}x{first.height}; not an integer upscaling of the input"
        )
    return scale


def iter_tiled(
    run_batch: Callable[[np.ndarray], np.ndarray],
    image: npt.NDArray[np.uint8],
    scale: int | None,
    tile: int | tuple[int, int],
    overlap: int,
    batch: int = 1,
) -> Iterator[tuple[int, int, int, npt.NDArray[np.uint8]]]:
    """The SR image piece by piece: ``(scale, top, left, block)`` per tile, `block` a uint8 kept region.

    ``top`` and ``left`` are output pixels; the blocks partition the ``(scale*H) x (scale*W)`` output.
    A consumer can paste them anywhere (a numpy array in `upscale_tiled`, a Pillow image in
    `upscale_tiled_pil`), so nothing but one batch of tiles is ever held as floats. Errors as
    `upscale_tiled`.
    """
    check_rgb_uint8(image, "image")
    if batch < 1 or (scale is not None and scale < 1):
        raise TilingError(f"batch and scale: must be >= 1, got {batch} and {scale}")
    tiles = plan_tiles(image.shape[0], image.shape[1], tile, overlap)
    for first in range(0, len(tiles), batch):
        group = tiles[first : first + batch]
        out = run_batch(_tile_batch(image, group))
        scale = scale or _infer_scale(out, group)
        out = _check_output(out, group, scale)
        for t, sr in zip(group, out, strict=True):
            rows = slice((t.keep_top - t.top) * scale, (t.keep_bottom - t.top) * scale)
            cols = slice((t.keep_left - t.left) * scale, (t.keep_right - t.left) * scale)
            yield scale, t.keep_top * scale, t.keep_left * scale, from_nchw_float(sr[:, rows, cols])


def upscale_tiled(
    run_batch: Callable[[np.ndarray], np.ndarray],
    image: npt.NDArray[np.uint8],
    scale: int | None,
    tile: int | tuple[int, int],
    overlap: int,
    batch: int = 1,
) -> npt.NDArray[np.uint8]:
    """Super-resolve a uint8 ``H x W x 3`` image tile by tile (see the module docstring).

    ``scale=None`` takes the factor from the first batch's output (for runners that do not declare it);
    every later batch must match it.

    Raises:
        TilingError: bad plan parameters, ``batch < 1``, or ``run_batch`` returned another shape than
            ``N x 3 x scale*th x scale*tw``.
        ImageError: `image` is not uint8 ``H x W x 3``, or the network produced NaN.
    """
    output: np.ndarray | None = None
    for factor, top, left, block in iter_tiled(run_batch, image, scale, tile, overlap, batch):
        if output is None:
            output = np.empty((image.shape[0] * factor, image.shape[1] * factor, 3), np.uint8)
        output[top : top + block.shape[0], left : left + block.shape[1]] = block
    assert output is not None  # plan_tiles returns at least one tile
    return output


def upscale_tiled_pil(
    run_batch: Callable[[np.ndarray], np.ndarray],
    image: npt.NDArray[np.uint8],
    scale: int | None,
    tile: int | tuple[int, int],
    overlap: int,
    batch: int = 1,
) -> Image.Image:
    """`upscale_tiled` pasted into a Pillow RGB image: the same pixels, held once (what PNG encoding needs).

    For a 4000x3000 input at x4 this saves the 576 MB numpy copy of the output next to Pillow's own.
    """
    output: Image.Image | None = None
    for factor, top, left, block in iter_tiled(run_batch, image, scale, tile, overlap, batch):
        if output is None:
            output = Image.new("RGB", (image.shape[1] * factor, image.shape[0] * factor))
        output.paste(Image.fromarray(block), (left, top))
    assert output is not None  # plan_tiles returns at least one tile
    return output
