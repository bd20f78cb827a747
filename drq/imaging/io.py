"""Read and write RGB images as uint8 arrays, and convert them to and from the models' NCHW floats.

Every image enters drq as a uint8 ``H x W x 3`` RGB array. `read_image` applies these rules, by the
mode Pillow reports for the file:

- ``RGB``: used as stored.
- ``L`` (8-bit grayscale): the gray value is replicated to R, G and B.
- ``P`` (palette, gray or colour): each index is replaced by its palette colour.
- ``LA``, ``RGBA``, ``PA`` (with alpha): the alpha channel is discarded. No compositing onto a
  background is done: the colour channels are kept exactly as stored, whatever the alpha.
- ``I;16``, ``I;16L``, ``I;16B`` (16-bit grayscale) and ``I`` (32-bit integer grayscale holding
  values in 0..65535): scaled to 8 bits with ``round(v * 255 / 65535)`` (half away from zero), then
  replicated to 3 channels. An ``I`` image with a value outside 0..65535 is rejected.
- 16-bit RGB/RGBA PNGs: Pillow has no 16-bit colour mode and decodes them to 8 bits itself by keeping
  the high byte (``v >> 8``, at most one level below the rounded value); drq takes those bytes as they
  come (alpha dropped as above).
- Any other mode (``1``, ``F``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ...) raises `ImageError`.

Pixel limit: an image of more than `pixel_limit()` pixels (default `DEFAULT_MAX_PIXELS`, 16,000,000:
a 4000x3000 photo passes) is refused from its file header, before any pixel is decoded, with one line
``<path>: WxH is N pixels, over the pixel limit of L (--max-pixels, or DRQ_MAX_PIXELS for every
command)``. `read_image` and `read_image_size` both check it, so every command that reads images
(upscale, eval, quantize's calibration folder, bench --data, zoo) refuses a decompression bomb before
allocating it. Pillow's own DecompressionBombWarning is silenced and its DecompressionBombError (at
twice ``Image.MAX_IMAGE_PIXELS``, about 179 M pixels, the highest usable limit) becomes the same line.

The pixels are used as stored: EXIF orientation is not applied, and a multi-frame file gives its first
frame. A missing, unreadable or corrupt file raises `ImageError` with one line
``<path>: cannot read image (<reason>)``.

`to_nchw_float` maps uint8 to float32 ``1 x 3 x H x W`` in [0, 1] (``v / 255``); `from_nchw_float`
is the evaluation's inverse: the SR output is clamped to [0, 1], multiplied by 255 in its own float
precision and rounded half to even (as ``torch.round`` does in the SR evaluation scripts), then cast to
uint8.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from drq.artifacts import atomic_write_bytes
from drq.errors import ImageError

# 8-bit modes read as their channels, after expanding palettes through Pillow (to RGBA so that a
# palette with transparency converts without Pillow's warning; the alpha is dropped below anyway).
_EIGHT_BIT_MODES = {"RGB": None, "RGBA": None, "L": None, "LA": None, "P": "RGBA", "PA": "RGBA"}
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I")

DEFAULT_MAX_PIXELS = 16_000_000
_limit = {"max_pixels": DEFAULT_MAX_PIXELS}


def set_pixel_limit(max_pixels: int) -> None:
    """Set the process-wide pixel limit (the CLI layer calls this from --max-pixels / DRQ_MAX_PIXELS).

    Raises:
        ImageError: `max_pixels` is not a positive integer.
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise ImageError(f"pixel limit: must be a positive number of pixels, got {max_pixels!r}")
    _limit["max_pixels"] = max_pixels


def pixel_limit() -> int:
    """The current pixel limit (`DEFAULT_MAX_PIXELS` unless `set_pixel_limit` changed it)."""
    return _limit["max_pixels"]


def _over_limit(path: object, width: int, height: int) -> str:
    return (
        f"{path}: {width}x{height} is {width * height} pixels, over the pixel limit of {pixel_limit()} "
        "(--max-pixels, or DRQ_MAX_PIXELS for every command)"
    )


@contextlib.contextmanager
def _open_checked(path: str | os.PathLike[str]) -> Iterator[Image.Image]:
    """`Image.open` (header only) with the pixel limit checked before anything is decoded."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except Image.DecompressionBombError as err:
        raise ImageError(
            f"{path}: more than {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels, over the pixel limit of "
            f"{pixel_limit()} (and Pillow's decompression-bomb limit)"
        ) from err
    with image:
        width, height = image.size
        if width * height > pixel_limit():
            raise ImageError(_over_limit(path, width, height))
        yield image


def _reason(err: BaseException) -> str:
    """A one-line reason for a failed read (Pillow messages can span lines)."""
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, IsADirectoryError):
        return "is a directory"
    if isinstance(err, PermissionError):
        return "permission denied"
    text = " ".join(str(err).split())
    return text or err.__class__.__name__


def _sixteen_to_eight(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 to 0..255 with round(v * 255 / 65535), halves rounded away from zero."""
    scaled = values.astype(np.float64) * (255.0 / 65535.0)
    # Values are non-negative, so floor(x + 0.5) is round-half-away-from-zero.
    return np.floor(scaled + 0.5).astype(np.uint8)


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2).astype(np.uint8, copy=False)


def read_image(path: str | os.PathLike[str]) -> npt.NDArray[np.uint8]:
    """Read an image file as a uint8 ``H x W x 3`` RGB array (mode rules in the module docstring).

    Args:
        path: The image file (any format Pillow reads).

    Returns:
        A new C-contiguous uint8 array of shape ``(H, W, 3)``.

    Raises:
        ImageError: The file is missing, unreadable or corrupt, or its mode is not supported.
    """
    try:
        with _open_checked(path) as image:
            image.load()
            mode = image.mode
            if mode in _EIGHT_BIT_MODES:
                expand = _EIGHT_BIT_MODES[mode]
                pixels = np.asarray(image.convert(expand) if expand else image)
            elif mode in _SIXTEEN_BIT_MODES:
                pixels = np.asarray(image)
            else:
                raise ImageError(f"{path}: unsupported image mode {mode}; convert it to 8-bit RGB")
    except ImageError:
        raise
    # Pillow signals bad files with OSError (incl. UnidentifiedImageError), SyntaxError or ValueError,
    # and oversized ones with DecompressionBombError.
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot read image ({_reason(err)})") from err

    if mode in _SIXTEEN_BIT_MODES:
        if mode == "I" and pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise ImageError(
                f"{path}: unsupported image mode I with values {int(pixels.min())}..{int(pixels.max())}; "
                "only 0..65535 is read as 16-bit"
            )
        return _gray_to_rgb(_sixteen_to_eight(pixels))
    if pixels.ndim == 2:  # L
        return _gray_to_rgb(pixels)
    if pixels.shape[2] == 2:  # LA -> L, alpha discarded
        return _gray_to_rgb(pixels[:, :, 0])
    # Copy: Pillow's arrays are read-only views of its buffer.
    return np.array(pixels[:, :, :3], dtype=np.uint8, order="C")


def check_rgb_uint8(img: np.ndarray, what: str) -> None:
    """Raise `ImageError` naming `what` unless `img` is a uint8 ``H x W x 3`` array."""
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        described = f"{img.dtype} {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise ImageError(f"{what}: expected a uint8 H x W x 3 array, got {described}")


def read_image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image from its header alone (no pixel decoding).

    Raises:
        ImageError: The file is missing or not a readable image (same message as `read_image`), or it
            is over the pixel limit.
    """
    try:
        with _open_checked(path) as image:
            if image.mode not in _EIGHT_BIT_MODES and image.mode not in _SIXTEEN_BIT_MODES:
                raise ImageError(f"{path}: unsupported image mode {image.mode}; convert it to 8-bit RGB")
            return image.size
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot read image ({_reason(err)})") from err


def check_image_header(path: str | os.PathLike[str]) -> tuple[int, int]:
    """``(width, height)`` of an image `read_image` will accept, judged from its header alone: readable,
    a supported mode, within the pixel limit, at least one pixel (so a batch can be validated before
    any output is written).

    Raises:
        ImageError: unreadable header, unsupported mode, over the pixel limit, or an empty image.
    """
    size = read_image_size(path)
    if min(size) < 1:
        raise ImageError(f"{path}: image of {size[0]}x{size[1]} pixels has nothing to upscale")
    return size


def write_image(path: str | os.PathLike[str], img: npt.NDArray[np.uint8] | Image.Image) -> Path:
    """Write a uint8 ``H x W x 3`` RGB array (or a Pillow RGB image) as a PNG, atomically.

    Args:
        path: Target file; its folder is created if needed. The format is PNG whatever the suffix.
        img: The pixels. A Pillow image is encoded as it is (no copy of a large output).

    Returns:
        The path written.

    Raises:
        ImageError: `img` is not a uint8 ``H x W x 3`` array or an RGB Pillow image.
    """
    if isinstance(img, Image.Image):
        if img.mode != "RGB":
            raise ImageError(f"{path}: expected an RGB image, got mode {img.mode}")
        image = img
    else:
        check_rgb_uint8(img, str(path))
        image = Image.fromarray(np.ascontiguousarray(img), mode="RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return atomic_write_bytes(path, buffer.getbuffer())


def to_nchw_float(img: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Convert a uint8 ``H x W x 3`` image to float32 ``1 x 3 x H x W`` in [0, 1] (``v / 255``).

    Raises:
        ImageError: `img` is not a uint8 ``H x W x 3`` array.
    """
    check_rgb_uint8(img, "image")
    chw = img.transpose(2, 0, 1).astype(np.float32) / np.float32(255.0)
    return np.ascontiguousarray(chw[None])


def from_nchw_float(arr: npt.NDArray[np.floating]) -> npt.NDArray[np.uint8]:
    """Convert a model output ``1 x 3 x H x W`` (or ``3 x H x W``) in [0, 1] to a uint8 ``H x W x 3``.

    The values are clamped to [0, 1], multiplied by 255 in the array's own float precision and rounded
    half to even, so the result matches ``(x.clamp(0, 1) * 255).round()`` in torch.

    Raises:
        ImageError: The shape is not ``1 x 3 x H x W`` / ``3 x H x W``, or the array holds NaN.
    """
    arr = np.asarray(arr)
    shape = arr.shape
    if arr.ndim == 4 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3 or arr.shape[0] != 3:
        raise ImageError(f"SR output: expected shape 1 x 3 x H x W, got {shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float32)
    nan = int(np.isnan(arr).sum())
    if nan:
        raise ImageError(f"SR output: {nan} NaN values")
    scaled = np.clip(arr, 0, 1) * arr.dtype.type(255)
    return np.ascontiguousarray(np.rint(scaled).astype(np.uint8).transpose(1, 2, 0))
