"""Write a Triton model repository that serves a drq model: an image model over a tile model.

    REPO/
      drq_repo.json              what the repository was written from (model sha256, settings)
      drq_sr/                    image model, python backend: image bytes -> PNG bytes (tiling inside)
        config.pbtxt
        1/model.py               `from serve.triton.image_backend import TritonPythonModel`
      drq_sr_tile/               tile model, dynamic batching with a bounded queue; one of
        config.pbtxt               - python backend running drq's OrtRunner (CPU; 1/model.py + model.onnx)
                                     or TrtRunner (GPU; 1/model.py + model.plan + model.plan.json)
        1/model.onnx | model.plan  - onnxruntime_onnx platform (the ONNX file; CPU or GPU)
                                   - tensorrt_plan platform (one engine, or one per compute capability
                                     through cc_model_filenames)

The image model reaches the tile model through BLS (business-logic scripting), not an ensemble:
tiling needs a loop whose length depends on the image. Queue limits on both models make Triton reject
work beyond them with UNAVAILABLE (HTTP 503) instead of queueing without bound.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from drq.artifacts import atomic_write_text, sha256_file
from serve.triton.errors import RepositoryError
from serve.triton.pbtxt import Enum, to_pbtxt

IMAGE_MODEL = "drq_sr"
TILE_MODEL = "drq_sr_tile"
RECORD = "drq_repo.json"
TileKind = Literal["python", "onnxruntime_onnx", "tensorrt_plan"]
TILE_KINDS: tuple[str, ...] = ("python", "onnxruntime_onnx", "tensorrt_plan")
_STUBS = {
    "image": "from serve.triton.image_backend import TritonPythonModel  # noqa: F401\n",
    "tile": "from serve.triton.tile_backend import TritonPythonModel  # noqa: F401\n",
}


@dataclass(frozen=True)
class QueueLimits:
    """A dynamic batcher's bounded queue: beyond `size` waiting requests, or after `timeout_ms` in the
    queue, Triton rejects the request (UNAVAILABLE, HTTP 503)."""

    size: int
    timeout_ms: int

    def __post_init__(self) -> None:
        if self.size < 1 or self.timeout_ms < 1:
            raise RepositoryError(
                f"queue: size and timeout must be >= 1, got {self.size}, {self.timeout_ms} ms"
            )

    def policy(self) -> dict[str, Any]:
        """`ModelQueuePolicy` fields (model_config.proto)."""
        return {
            "max_queue_size": self.size,
            "timeout_action": Enum("REJECT"),
            "default_timeout_microseconds": self.timeout_ms * 1000,
            "allow_timeout_override": False,
        }


@dataclass(frozen=True)
class TileModelSpec:
    """The tile model: its kind, tensor names, batching and instances.

    Attributes:
        kind: python (drq's OrtRunner), onnxruntime_onnx or tensorrt_plan.
        input / output: tensor names of the network (the ONNX graph's, or the engine's).
        max_batch: the most tiles Triton's dynamic batcher merges into one execution.
        batch_delay_us: how long the batcher waits for more requests to merge.
        queue: its bounded queue.
        instances: execution instances (processes for the python backend).
        threads: python kind: onnxruntime intra-op threads per instance (0: its default).
        gpu: KIND_GPU instances (one group per GPU) instead of KIND_CPU.
        dims: per-sample dims (C, H, W), -1 where dynamic.
        plans: tensorrt_plan: file name in the version folder for each compute capability ("9.0").
    """

    kind: TileKind
    input: str
    output: str
    max_batch: int = 8
    batch_delay_us: int = 2000
    queue: QueueLimits = QueueLimits(64, 30_000)
    instances: int = 1
    threads: int = 0
    gpu: bool = False
    dims: tuple[int, int, int] = (3, -1, -1)
    plans: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in TILE_KINDS:
            raise RepositoryError(
                f"tile model: kind must be one of {', '.join(TILE_KINDS)}, got {self.kind!r}"
            )
        if self.max_batch < 1 or self.instances < 1 or self.threads < 0 or self.batch_delay_us < 0:
            raise RepositoryError("tile model: max_batch and instances must be >= 1, threads and delay >= 0")
        if self.kind == "tensorrt_plan" and not self.plans:
            raise RepositoryError("tile model: tensorrt_plan needs at least one engine")


@dataclass(frozen=True)
class ImageModelSpec:
    """The image model: tiling (LR pixels), pixel limit, queue and instances."""

    scale: int
    tile: int
    overlap: int
    tile_batch: int
    max_pixels: int
    queue: QueueLimits = QueueLimits(16, 60_000)
    instances: int = 2

    def __post_init__(self) -> None:
        if (
            min(self.scale, self.tile, self.tile_batch, self.max_pixels, self.instances) < 1
            or self.overlap < 0
        ):
            raise RepositoryError(
                "image model: scale, tile, tile batch, pixel limit and instances must be >= 1, overlap >= 0"
            )


def _parameters(values: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": {"string_value": str(v)}} for k, v in values.items()]


def _instances(count: int, gpu: bool) -> list[dict[str, Any]]:
    return [{"count": count, "kind": Enum("KIND_GPU" if gpu else "KIND_CPU")}]


def image_model_config(image: ImageModelSpec, tile: TileModelSpec) -> dict[str, Any]:
    """The image model's ModelConfig (as `pbtxt.to_pbtxt` input)."""
    if image.tile_batch > tile.max_batch:
        raise RepositoryError(
            f"tile batch {image.tile_batch}: more than the tile model's max batch {tile.max_batch}"
        )
    return {
        "name": IMAGE_MODEL,
        "backend": "python",
        # 0: requests are not batched (each is one image of its own size); the batcher still gives the
        # model a bounded queue with a timeout.
        "max_batch_size": 0,
        "input": [{"name": "image", "data_type": Enum("TYPE_UINT8"), "dims": [-1]}],
        "output": [{"name": "png", "data_type": Enum("TYPE_UINT8"), "dims": [-1]}],
        "dynamic_batching": {"default_queue_policy": image.queue.policy()},
        "instance_group": _instances(image.instances, gpu=False),
        "parameters": _parameters(
            {
                "scale": image.scale,
                "tile": image.tile,
                "overlap": image.overlap,
                "tile_batch": image.tile_batch,
                "max_pixels": image.max_pixels,
                "tile_model": TILE_MODEL,
                "tile_input": tile.input,
                "tile_output": tile.output,
            }
        ),
    }


def tile_model_config(tile: TileModelSpec) -> dict[str, Any]:
    """The tile model's ModelConfig (as `pbtxt.to_pbtxt` input)."""
    tensor = {"data_type": Enum("TYPE_FP32"), "dims": list(tile.dims)}
    config: dict[str, Any] = {"name": TILE_MODEL}
    if tile.kind == "python":
        config["backend"] = "python"
    else:
        config["platform"] = tile.kind
    config |= {
        "max_batch_size": tile.max_batch,
        "input": [{"name": tile.input, **tensor}],
        "output": [{"name": tile.output, **tensor}],
        "dynamic_batching": {
            "max_queue_delay_microseconds": tile.batch_delay_us,
            "default_queue_policy": tile.queue.policy(),
        },
        "instance_group": _instances(tile.instances, tile.gpu),
    }
    if tile.kind == "python":
        config["parameters"] = _parameters(
            {"input": tile.input, "output": tile.output, "threads": tile.threads}
        )
    elif tile.kind == "onnxruntime_onnx":
        config["default_model_filename"] = "model.onnx"
    elif len(tile.plans) == 1:
        config["default_model_filename"] = next(iter(tile.plans.values()))
    else:
        # One engine per GPU generation: Triton picks the file by the device's compute capability.
        config["cc_model_filenames"] = [{"key": cc, "value": name} for cc, name in sorted(tile.plans.items())]
    return config


def _stage(staging: Path, image: ImageModelSpec, tile: TileModelSpec, files: dict[str, Path]) -> None:
    image_dir, tile_dir = staging / IMAGE_MODEL, staging / TILE_MODEL
    atomic_write_text(image_dir / "config.pbtxt", to_pbtxt(image_model_config(image, tile)))
    atomic_write_text(image_dir / "1" / "model.py", _STUBS["image"])
    atomic_write_text(tile_dir / "config.pbtxt", to_pbtxt(tile_model_config(tile)))
    if tile.kind == "python":
        atomic_write_text(tile_dir / "1" / "model.py", _STUBS["tile"])
    (tile_dir / "1").mkdir(parents=True, exist_ok=True)
    for name, source in files.items():
        shutil.copyfile(source, tile_dir / "1" / name)


def write_repository(
    out: Path, image: ImageModelSpec, tile: TileModelSpec, files: dict[str, Path], overwrite: bool = False
) -> Path:
    """Write the repository into `out` (staged in a sibling temp folder, then renamed into place).

    Args:
        files: model files to copy into the tile model's version folder, by target name
            ("model.onnx", or the plan names of `tile.plans`).

    Raises:
        RepositoryError: `out` exists (without `overwrite`, or is not a repository drq wrote), or a
            model file is missing.
    """
    for source in files.values():
        if not source.is_file():
            raise RepositoryError(f"{source}: no such model file")
    if out.exists() and not overwrite:
        raise RepositoryError(f"{out}: exists; pass --overwrite to replace it")
    if out.exists() and not (out / RECORD).is_file():
        raise RepositoryError(f"{out}: exists and is not a repository written by drq ({RECORD} missing)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        _stage(staging, image, tile, files)
        record = {
            "schema_version": 1,
            "image_model": asdict(image),
            "tile_model": asdict(tile),
            "files": {name: {"source": str(src), "sha256": sha256_file(src)} for name, src in files.items()},
        }
        atomic_write_text(staging / RECORD, json.dumps(record, indent=2, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
