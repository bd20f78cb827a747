"""serve.tiling: tile plans, and tiled == whole-image output bit for bit within the receptive field."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from drq.imaging.io import from_nchw_float, to_nchw_float
from serve.tiling import TilingError, plan_tiles, upscale_tiled
from tests.fakes.conv_chain import conv_chain_sr, radius

pytestmark = pytest.mark.torch_free


def _coverage(height: int, width: int, tile, overlap: int) -> np.ndarray:
    counts = np.zeros((height, width), int)
    for t in plan_tiles(height, width, tile, overlap):
        counts[t.keep_top : t.keep_bottom, t.keep_left : t.keep_right] += 1
    return counts


@pytest.mark.parametrize(
    ("height", "width", "tile", "overlap"),
    [(37, 53, 16, 3), (100, 7, 32, 5), (64, 64, 64, 8), (65, 64, 64, 8), (200, 150, (48, 40), 0)],
)
def test_kept_regions_partition_the_image_and_keep_their_distance_from_tile_edges(
    height, width, tile, overlap
) -> None:
    tiles = plan_tiles(height, width, tile, overlap)
    assert (_coverage(height, width, tile, overlap) == 1).all()
    assert len({(t.height, t.width) for t in tiles}) == 1
    for t in tiles:
        assert 0 <= t.top and t.top + t.height <= height and 0 <= t.left and t.left + t.width <= width
        # A kept pixel is `overlap` away from every tile edge that is not the image border.
        assert t.top == 0 or t.keep_top - t.top >= overlap
        assert t.left == 0 or t.keep_left - t.left >= overlap
        assert t.top + t.height == height or t.top + t.height - t.keep_bottom >= overlap
        assert t.left + t.width == width or t.left + t.width - t.keep_right >= overlap


def test_an_image_no_larger_than_the_tile_is_one_tile_of_its_own_shape() -> None:
    (only,) = plan_tiles(30, 20, 64, 10)
    assert (only.top, only.left, only.height, only.width) == (0, 0, 30, 20)
    assert (only.keep_bottom, only.keep_right) == (30, 20)
    # One axis longer than the tile: tiles span the short axis whole.
    tiles = plan_tiles(30, 200, 64, 10)
    assert {(t.height, t.width) for t in tiles} == {(30, 64)} and len(tiles) == 5


def test_impossible_plans_are_refused() -> None:
    with pytest.raises(TilingError, match="must exceed twice the overlap"):
        plan_tiles(100, 100, 20, 10)
    with pytest.raises(TilingError, match="overlap: must be >= 0"):
        plan_tiles(100, 100, 20, -1)
    with pytest.raises(TilingError, match="tile: must be a positive"):
        plan_tiles(100, 100, 0, 0)


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"lr": x})[0]


def _image(height: int, width: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(("kernels", "dilations"), [((3, 3), (1, 1)), ((5, 3), (1, 2))])
def test_tiled_equals_whole_image_bit_for_bit_when_overlap_covers_the_receptive_field(
    kernels, dilations
) -> None:
    run = _session(conv_chain_sr(2, kernels, dilations))
    r = radius(kernels, dilations) + 1  # + the 3x3 conv before DepthToSpace
    image = _image(45, 61)
    whole = from_nchw_float(run(to_nchw_float(image)))
    tiled = upscale_tiled(run, image, 2, tile=(20, 24), overlap=r, batch=3)
    assert tiled.dtype == np.uint8 and tiled.shape == whole.shape == (90, 122, 3)
    assert np.array_equal(tiled, whole)


def test_tiled_differs_when_overlap_is_below_the_receptive_field() -> None:
    run = _session(conv_chain_sr(2, (3, 3, 3)))
    image = _image(45, 61)
    whole = from_nchw_float(run(to_nchw_float(image)))
    for too_little in (1, 3):  # the receptive-field radius is 4
        assert not np.array_equal(upscale_tiled(run, image, 2, tile=20, overlap=too_little, batch=2), whole)
    assert np.array_equal(upscale_tiled(run, image, 2, tile=20, overlap=4, batch=2), whole)


def test_a_runner_with_the_wrong_output_shape_is_named() -> None:
    image = _image(40, 40)
    with pytest.raises(TilingError, match=r"runner: returned shape \(2, 3, 32, 32\)"):
        upscale_tiled(lambda x: np.zeros((x.shape[0], 3, 32, 32), np.float32), image, 4, 16, 2, batch=2)


def test_from_nchw_float_inverts_to_nchw_float_exactly() -> None:
    # eval --onnx tiles from the float input it is given: the round trip must be lossless.
    every_value = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    assert np.array_equal(from_nchw_float(to_nchw_float(every_value)), every_value)


def test_the_scale_is_taken_from_the_first_batch_when_not_declared() -> None:
    run = _session(conv_chain_sr(3))
    image = _image(30, 41)
    assert np.array_equal(upscale_tiled(run, image, None, 16, 3), upscale_tiled(run, image, 3, 16, 3))
    with pytest.raises(TilingError, match="not an integer upscaling"):
        upscale_tiled(lambda x: np.zeros((1, 3, 20, 20), np.float32), image, None, 16, 3)


def test_the_pillow_sink_holds_the_same_pixels() -> None:
    from serve.tiling import upscale_tiled_pil

    run = _session(conv_chain_sr(2))
    image = _image(33, 50)
    pil = upscale_tiled_pil(run, image, 2, 16, 3, batch=4)
    assert pil.mode == "RGB" and pil.size == (100, 66)
    assert np.array_equal(np.asarray(pil), upscale_tiled(run, image, 2, 16, 3, batch=4))
