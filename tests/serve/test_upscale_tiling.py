"""`drq upscale` and `drq eval --onnx` tile images larger than the tile, with the overlap from the graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from drq.cli import main
from tests.fakes.conv_chain import conv_chain_sr

pytestmark = pytest.mark.torch_free


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    path = tmp_path / "chain_x2.onnx"
    onnx.save(conv_chain_sr(2, (3, 5), (1, 2)), str(path))  # receptive-field radius 1 + 4 + 1 = 6
    return path


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "big.png"
    path.parent.mkdir()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(path)
    return path


def _upscale(model: Path, image: Path, out: Path, *extra: str) -> np.ndarray:
    argv = ["upscale", "--onnx", str(model), str(image), "-o", str(out), "--threads", "1", *extra]
    assert main(argv) == 0
    return np.asarray(Image.open(out / "big.png"))


def test_tiled_upscale_equals_the_whole_image(model: Path, image: Path, tmp_path: Path, capsys) -> None:
    whole = _upscale(model, image, tmp_path / "whole", "--quiet")  # 90x70 < the default tile 256
    tiled = _upscale(model, image, tmp_path / "tiled", "--tile", "32", "--batch", "3", "--report-memory")
    assert whole.shape == (140, 180, 3) and np.array_equal(tiled, whole)
    out = capsys.readouterr().out
    assert "note:" not in out  # overlap 6 <= 32 // 4: no cap
    assert "peak RSS" in out and out.strip().endswith("MiB")
    # Too little overlap for this network changes pixels: the default overlap is what makes it exact.
    narrow = _upscale(model, image, tmp_path / "narrow", "--tile", "32", "--overlap", "2", "--quiet")
    assert not np.array_equal(narrow, whole)


def test_a_capped_overlap_is_announced(model: Path, image: Path, tmp_path: Path, capsys) -> None:
    _upscale(model, image, tmp_path / "t16", "--tile", "16")
    assert (
        "note: overlap capped at 4 (a quarter of the tile) below the receptive field 6"
        in capsys.readouterr().out
    )


def test_eval_tiles_only_images_larger_than_the_tile(model: Path, image: Path, tmp_path: Path) -> None:
    from drq.imaging.bicubic import imresize

    data = tmp_path / "set"
    data.mkdir()
    hr = np.random.default_rng(6).integers(0, 256, (140, 180, 3), dtype=np.uint8)
    Image.fromarray(hr).save(data / "a.png")
    assert imresize(hr, 0.5).shape == (70, 90, 3)
    scores = []
    for extra in ([], ["--tile", "40"]):
        out = tmp_path / f"eval{len(extra)}.json"
        argv = [
            "eval",
            "--onnx",
            str(model),
            "--scale",
            "2",
            "--data",
            str(data),
            "--quiet",
            "--json",
            str(out),
        ]
        assert main(argv + extra) == 0
        payload = json.loads(out.read_text())
        scores.append(payload["results"][0]["psnr"])
        assert payload["model"]["tile"] == ([256, 256] if not extra else [40, 40])
        assert payload["model"]["overlap"] == 6
    assert scores[0] == scores[1]


@pytest.mark.parametrize(("option", "value"), [("--tile", "0"), ("--overlap", "-1"), ("--batch", "0")])
def test_bad_tiling_values_are_one_line(
    model: Path, image: Path, tmp_path: Path, capsys, option, value
) -> None:
    argv = ["upscale", "--onnx", str(model), str(image), "-o", str(tmp_path / "o"), option, value]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip().startswith(f"drq upscale: {option}: must be >=")
    assert not (tmp_path / "o" / "big.png").exists()


@pytest.mark.parametrize("command", ["upscale", "eval"])
def test_a_model_whose_input_is_not_rgb_nchw_is_refused_first(
    tmp_path: Path, image: Path, command, capsys
) -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "gray",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, "H", "W"])],
    )
    gray = tmp_path / "gray.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(gray))
    if command == "upscale":
        argv = ["upscale", "--onnx", str(gray), str(image), "-o", str(tmp_path / "o")]
    else:
        argv = ["eval", "--onnx", str(gray), "--scale", "2", "--data", str(image.parent)]
    assert main(argv) == 2
    expected = (
        f"drq {command}: {gray}: input 'x' has shape ?x1x?x? (rank 4, 1 channels); drq runs SR models "
        "on NCHW RGB images (N x 3 x H x W)"
    )
    assert capsys.readouterr().err.strip() == expected
