"""`drq upscale`: outputs equal the model's own output rounded to uint8; inputs are never overwritten."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from drq.cli import main
from tests.fakes.tiny_onnx import float_sr


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_x2.onnx"
    onnx.save(float_sr(scale=2), str(path))
    return path


@pytest.fixture()
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "lr"
    folder.mkdir()
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8), "RGB").save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (5, 6), dtype=np.uint8), "L").save(folder / "b.png")
    return folder


def _expected(model: Path, image: Path) -> np.ndarray:
    import onnxruntime as ort

    rgb = np.asarray(Image.open(image).convert("RGB"), dtype=np.float32) / np.float32(255.0)
    x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    out = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"lr": x})[0][0]
    return np.round(np.clip(out, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8).transpose(1, 2, 0)


def test_folder_in_png_out_matches_the_model(model: Path, images: Path, tmp_path: Path) -> None:
    out = tmp_path / "sr"
    assert (
        main(["upscale", "--onnx", str(model), str(images), "-o", str(out), "--threads", "1", "--quiet"]) == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    for name, (h, w) in {"a.png": (9, 7), "b.png": (5, 6)}.items():
        sr = np.asarray(Image.open(out / name))
        assert sr.shape == (2 * h, 2 * w, 3)
        np.testing.assert_array_equal(sr, _expected(model, images / name))


def test_refuses_to_overwrite_inputs_or_outputs(model: Path, images: Path, tmp_path: Path, capsys) -> None:
    before = (images / "a.png").read_bytes()
    assert main(["upscale", "--onnx", str(model), str(images / "a.png"), "-o", str(images)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("a.png: refusing to overwrite an input image; choose another --output")
    assert (images / "a.png").read_bytes() == before

    out = tmp_path / "sr"
    out.mkdir()
    (out / "a.png").write_bytes(b"keep")
    assert main(["upscale", "--onnx", str(model), str(images / "a.png"), "-o", str(out)]) == 2
    assert "a.png: exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert (out / "a.png").read_bytes() == b"keep"
    assert (
        main(
            ["upscale", "--onnx", str(model), str(images / "a.png"), "-o", str(out), "--overwrite", "--quiet"]
        )
        == 0
    )
    assert Image.open(out / "a.png").size == (14, 18)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--onnx", "{tmp}/none.onnx", "{images}"], "none.onnx: no such ONNX file"),
        (["--engine", "{tmp}/none.plan", "{images}"], "none.plan: no such engine file"),
        (["--onnx", "{model}", "{tmp}/missing.png"], "missing.png: no such file or folder"),
        (["--onnx", "{model}", "{model}"], "tiny_x2.onnx: not an image file"),
        (["--onnx", "{model}", "{images}", "{images}/a.png"], "would write"),
    ],
)
def test_bad_input_is_one_line(model: Path, images: Path, tmp_path: Path, capsys, args, message) -> None:
    argv = [a.format(tmp=tmp_path, images=images, model=model) for a in args]
    assert main(["upscale", *argv, "-o", str(tmp_path / "sr")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not (tmp_path / "sr").exists()


def test_corrupt_image_names_the_file(model: Path, images: Path, tmp_path: Path, capsys) -> None:
    (images / "c.png").write_bytes(b"not a png")
    assert main(["upscale", "--onnx", str(model), str(images / "c.png"), "-o", str(tmp_path / "sr")]) == 2
    err = capsys.readouterr().err.strip()
    assert "c.png: cannot read image" in err and "\n" not in err


@pytest.mark.parametrize(
    "extra, flag",
    [
        (["--tile", "64"], "--tile"),
        (["--overlap", "4"], "--overlap"),
        (["--batch", "2"], "--batch"),
        (["--threads", "2"], "--threads"),
        (["--cuda"], "--cuda"),
        (["--cuda-binding", "pycuda"], "--cuda-binding"),
    ],
)
def test_local_runner_options_are_refused_with_a_server(
    images: Path, tmp_path: Path, capsys, extra: list[str], flag: str
) -> None:
    # Checked before any connection: the URL needs no server behind it.
    argv = ["upscale", "--server", "http://127.0.0.1:9", str(images), "-o", str(tmp_path / "sr"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert f"{flag}: not used with --server" in err and "drq triton-repo" in err and "\n" not in err
    assert not (tmp_path / "sr").exists()


def test_server_timeout_is_refused_without_a_server(
    model: Path, images: Path, tmp_path: Path, capsys
) -> None:
    argv = ["upscale", "--onnx", str(model), str(images), "-o", str(tmp_path / "sr"), "--server-timeout", "5"]
    assert main(argv) == 2
    assert "--server-timeout: only used with --server" in capsys.readouterr().err
    assert not (tmp_path / "sr").exists()
