"""One image request, start to end, independent of Triton: encoded bytes in, PNG bytes out.

The image model of the repository (`serve.triton.image_backend`) calls `upscale_encoded` with a
`run_batch` that sends each batch of tiles to the tile model through Triton's business-logic scripting;
`drq bench --server` calls it with an in-process runner. Both therefore decode, tile, stitch and encode
exactly as `drq upscale` does locally (`drq.imaging.io.read_image`, `serve.tiling.upscale_tiled`,
`drq.imaging.io.write_image`'s PNG encoding), which is what makes their outputs byte-identical.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from drq.imaging.io import read_image
from serve.tiling import upscale_tiled


class RequestImage(io.BytesIO):
    """The encoded bytes of one request, named in error messages as `name` instead of a buffer repr."""

    def __init__(self, data: bytes, name: str = "request image") -> None:
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:  # Pillow puts repr(file) into "cannot identify image file ..."
        return self.name


@dataclass(frozen=True)
class TilePlan:
    """How an image model tiles: the model's scale, the tile side and overlap (LR pixels), tiles per call."""

    scale: int
    tile: int
    overlap: int
    batch: int


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a uint8 H x W x 3 image, encoded as `drq.imaging.io.write_image` encodes files."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def upscale_encoded(data: bytes, plan: TilePlan, run_batch: Callable[[np.ndarray], np.ndarray]) -> bytes:
    """Decode PNG/JPEG/WebP/... bytes, super-resolve them tile by tile, and return the result as PNG.

    Raises:
        ImageError: the bytes are not a readable image, or it is over the pixel limit (one line).
        TilingError: the plan is impossible, or `run_batch` returned another shape.
    """
    if not data:
        from drq.errors import ImageError

        raise ImageError("request image: empty (0 bytes)")
    image = read_image(RequestImage(data))
    return encode_png(upscale_tiled(run_batch, image, plan.scale, plan.tile, plan.overlap, plan.batch))
