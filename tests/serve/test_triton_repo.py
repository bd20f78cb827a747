"""`drq triton-repo` and the pieces of the Triton models that run without a server.

Every config.pbtxt written is parsed with Triton's own ModelConfig protobuf (tritonclient ships it).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from drq.cli import main
from drq.imaging.io import read_image, write_image
from drq.manifest import Manifest, Profile, manifest_path, save_manifest
from serve.tiling import upscale_tiled
from serve.triton.pbtxt import Enum, parse_model_config, to_pbtxt
from serve.triton.pipeline import TilePlan, upscale_encoded
from serve.triton.repository import IMAGE_MODEL, TILE_MODEL
from serve.triton.tile_backend import run_grouped
from tests.fakes.tiny_onnx import float_sr

pytestmark = [pytest.mark.torch_free]
pytest.importorskip("tritonclient.grpc", reason="needs tritonclient (pip install 'tritonclient[grpc]')")


@pytest.fixture()
def model(tmp_path: Path) -> Path:
    path = tmp_path / "tiny_x2.onnx"
    onnx.save(float_sr(scale=2), str(path))
    return path


def _configs(repo: Path) -> dict[str, object]:
    return {
        m: parse_model_config((repo / m / "config.pbtxt").read_text(), m) for m in (IMAGE_MODEL, TILE_MODEL)
    }


def _params(config: object) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}  # type: ignore[attr-defined]


def test_python_repository_parses_and_carries_the_tiling(model: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    argv = ["triton-repo", "--onnx", str(model), "-o", str(repo), "--tile", "40", "--overlap", "3"]
    assert (
        main([*argv, "--batch", "4", "--max-pixels", "1000", "--queue-size", "5", "--queue-timeout-ms", "7"])
        == 0
    )
    configs = _configs(repo)
    image, tile = configs[IMAGE_MODEL], configs[TILE_MODEL]
    assert image.backend == "python" and image.max_batch_size == 0  # type: ignore[attr-defined]
    assert [(i.name, i.data_type, list(i.dims)) for i in image.input] == [("image", 2, [-1])]  # type: ignore[attr-defined]
    policy = image.dynamic_batching.default_queue_policy  # type: ignore[attr-defined]
    assert (policy.max_queue_size, policy.default_timeout_microseconds, policy.timeout_action) == (5, 7000, 0)
    assert _params(image) == {
        "scale": "2",
        "tile": "40",
        "overlap": "3",
        "tile_batch": "4",
        "max_pixels": "1000",
        "tile_model": TILE_MODEL,
        "tile_input": "lr",
        "tile_output": "sr",
    }
    assert tile.backend == "python" and tile.max_batch_size == 8  # type: ignore[attr-defined]
    assert [(i.name, list(i.dims)) for i in tile.input] == [("lr", [3, -1, -1])]  # type: ignore[attr-defined]
    assert (repo / TILE_MODEL / "1" / "model.onnx").read_bytes() == model.read_bytes()
    assert "serve.triton.tile_backend" in (repo / TILE_MODEL / "1" / "model.py").read_text()
    record = json.loads((repo / "drq_repo.json").read_text())
    assert record["image_model"]["tile"] == 40 and record["files"]["model.onnx"]["sha256"]


def test_onnxruntime_repository_and_refusals(model: Path, tmp_path: Path, capsys) -> None:
    repo = tmp_path / "repo"
    argv = [
        "triton-repo",
        "--onnx",
        str(model),
        "-o",
        str(repo),
        "--tile-backend",
        "onnxruntime_onnx",
        "--gpu",
    ]
    assert main(argv) == 0
    tile = _configs(repo)[TILE_MODEL]
    assert tile.platform == "onnxruntime_onnx" and tile.default_model_filename == "model.onnx"  # type: ignore[attr-defined]
    assert tile.instance_group[0].kind == 1  # KIND_GPU  # type: ignore[attr-defined]
    capsys.readouterr()
    assert main(argv) == 2
    assert (
        capsys.readouterr().err.strip() == f"drq triton-repo: {repo}: exists; pass --overwrite to replace it"
    )
    assert main([*argv, "--overwrite", "--batch", "9"]) == 2
    assert "tile batch 9: more than the tile model's max batch 8" in capsys.readouterr().err
    assert main(["triton-repo", "--onnx", str(tmp_path / "missing.onnx"), "-o", str(tmp_path / "r2")]) == 2
    assert "missing.onnx: no such ONNX file" in capsys.readouterr().err


def _engine(tmp_path: Path, model: Path, cc: str, max_batch: int = 8) -> Path:
    plan = tmp_path / f"m_{cc}.plan"
    plan.write_bytes(b"engine bytes " + cc.encode())
    manifest = Manifest(
        engine_sha256="a" * 64,
        onnx=model.name,
        onnx_sha256="b" * 64,
        flavour="tensorrt",
        tensorrt_version="10.13.0.35",
        device="NVIDIA H200",
        compute_capability=cc,
        input_name="lr",
        profile=Profile((1, 3, 16, 16), (1, 3, 64, 64), (max_batch, 3, 96, 128)),
        build_seconds=1.0,
    )
    save_manifest(manifest, manifest_path(plan))
    return plan


def test_tensorrt_plan_repository_one_plan_per_compute_capability(model: Path, tmp_path: Path) -> None:
    plans = [_engine(tmp_path, model, cc) for cc in ("9.0", "8.9")]
    repo = tmp_path / "repo"
    assert main(["triton-repo", "--engine", *map(str, plans), "-o", str(repo), "--overlap", "2"]) == 0
    configs = _configs(repo)
    tile = configs[TILE_MODEL]
    assert tile.platform == "tensorrt_plan"  # type: ignore[attr-defined]
    assert [list(t.dims) for t in (*tile.input, *tile.output)] == [[3, -1, -1]] * 2  # profile: H, W range
    assert dict(tile.cc_model_filenames) == {"8.9": "model_sm89.plan", "9.0": "model_sm90.plan"}  # type: ignore[attr-defined]
    assert tile.instance_group[0].kind == 1  # type: ignore[attr-defined]
    assert (repo / TILE_MODEL / "1" / "model_sm90.plan").read_bytes() == b"engine bytes 9.0"
    assert _params(configs[IMAGE_MODEL])["tile"] == "96"  # the profile's max H x W caps the tile
    single = tmp_path / "single"
    assert main(["triton-repo", "--engine", str(plans[0]), "-o", str(single), "--overlap", "2"]) == 0
    assert _configs(single)[TILE_MODEL].default_model_filename == "model_sm90.plan"  # type: ignore[attr-defined]


def test_pbtxt_writer_round_trips_through_the_real_protobuf() -> None:
    config = {
        "name": 'we"ird\\name',
        "max_batch_size": 2,
        "input": [{"name": "x", "data_type": Enum("TYPE_FP32"), "dims": [3, -1]}],
        "dynamic_batching": {"preserve_ordering": True},
        "parameters": [{"key": "k", "value": {"string_value": "a b"}}],
    }
    parsed = parse_model_config(to_pbtxt(config))
    assert parsed.name == 'we"ird\\name' and parsed.dynamic_batching.preserve_ordering
    assert list(parsed.input[0].dims) == [3, -1] and parsed.parameters["k"].string_value == "a b"
    with pytest.raises(Exception, match="not a Triton ModelConfig"):
        parse_model_config('name: "x"\nmax_queue_size: 3\n')


def test_the_request_pipeline_matches_local_tiling_and_png_files(model: Path, tmp_path: Path) -> None:
    from serve.runtime.ort import OrtRunner

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=90)  # JPEG in, PNG out
    runner = OrtRunner(model, threads=1)
    png = upscale_encoded(buffer.getvalue(), TilePlan(scale=2, tile=20, overlap=2, batch=3), runner.run)
    decoded = read_image(io.BytesIO(buffer.getvalue()))
    local = write_image(tmp_path / "local.png", upscale_tiled(runner.run, decoded, 2, 20, 2, 3))
    assert png == local.read_bytes()


def test_tile_batches_of_several_requests_run_together_and_split_back() -> None:
    calls: list[tuple[int, ...]] = []

    def run(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return x * 2

    a, b, c = np.ones((2, 3, 4, 4)), np.full((1, 3, 4, 4), 3.0), np.full((3, 3, 5, 4), 5.0)
    out = run_grouped(run, [a, c, b])
    assert sorted(calls) == [(3, 3, 4, 4), (3, 3, 5, 4)]
    for got, want in zip(out, (a, c, b), strict=True):
        np.testing.assert_array_equal(got, want * 2)


def test_python_tile_model_serves_one_engine_with_drqs_runner(model: Path, tmp_path: Path, capsys) -> None:
    plan = _engine(tmp_path, model, "9.0", max_batch=4)
    repo = tmp_path / "repo"
    argv = [
        "triton-repo",
        "--engine",
        str(plan),
        "-o",
        str(repo),
        "--overlap",
        "2",
        "--tile-backend",
        "python",
    ]
    assert main(argv) == 0
    tile = _configs(repo)[TILE_MODEL]
    assert tile.backend == "python" and tile.max_batch_size == 4  # capped at the profile's max N
    assert tile.instance_group[0].kind == 1  # KIND_GPU
    version = repo / TILE_MODEL / "1"
    assert (version / "model.plan").read_bytes() == plan.read_bytes()
    assert (version / "model.plan.json").read_bytes() == manifest_path(plan).read_bytes()
    assert not (version / "model.onnx").exists()
    two = [str(plan), str(_engine(tmp_path, model, "8.9", max_batch=4))]
    assert (
        main(["triton-repo", "--engine", *two, "-o", str(tmp_path / "r2"), "--tile-backend", "python"]) == 2
    )
    assert "drq's TrtRunner serves one engine" in capsys.readouterr().err
    assert (
        main(
            [
                "triton-repo",
                "--onnx",
                str(model),
                "-o",
                str(tmp_path / "r3"),
                "--tile-backend",
                "tensorrt_plan",
            ]
        )
        == 2
    )
    assert "needs --engine" in capsys.readouterr().err


def test_the_tile_backend_opens_the_runner_for_its_version_folder(model: Path, tmp_path: Path) -> None:
    from serve.runtime.ort import OrtRunner
    from serve.triton.tile_backend import open_runner

    (tmp_path / "model.onnx").write_bytes(model.read_bytes())
    runner = open_runner(tmp_path, threads=1)
    assert isinstance(runner, OrtRunner) and runner.name == "model.onnx"
    (tmp_path / "model.plan").write_bytes(b"not an engine")
    with pytest.raises(Exception, match="model.plan"):  # TrtRunner: manifest missing, named
        open_runner(tmp_path, threads=1)


def test_engine_dims_follow_the_profile() -> None:
    from serve.triton_repo_command import _profile_dims

    assert _profile_dims(Profile((1, 3, 64, 64), (2, 3, 64, 80), (4, 3, 64, 96))) == (3, 64, -1)
    assert _profile_dims(Profile((1, 3, 16, 16), (1, 3, 64, 64), (8, 3, 96, 128))) == (3, -1, -1)
