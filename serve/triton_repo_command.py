"""`drq triton-repo`: write a Triton model repository that serves a drq model (see `serve.triton.repository`).

    drq triton-repo --onnx build/imdn_x4_fp32.onnx -o build/triton_repo [--tile 128] [--overlap 8]
    drq triton-repo --engine sm90=build/m_h200.plan sm89=build/m_l40s.plan -o build/triton_repo_gpu

The tile model is the python backend running drq's OrtRunner for ONNX (CPU; `--tile-backend
onnxruntime_onnx` uses Triton's onnxruntime backend instead), and a `tensorrt_plan` model for engines
(one per compute capability, read from each engine's manifest). Tiling follows `drq upscale`'s rule.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from drq.cli_args import CommandParser
from drq.manifest import Profile, load_manifest, manifest_path
from serve.tile_options import add_tiling_arguments, resolve_tiling
from serve.triton.errors import RepositoryError
from serve.triton.repository import (
    ImageModelSpec,
    QueueLimits,
    TileModelSpec,
    write_repository,
)


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq triton-repo",
        description="Write a Triton Inference Server model repository: an image model (image bytes in, "
        "PNG out, tiling inside) over a dynamically batched tile model.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--onnx", type=Path, help="ONNX model from `drq export`")
    source.add_argument(
        "--engine",
        nargs="+",
        metavar="[NAME=]PLAN",
        help="engines from `drq build` (manifest beside each), one per compute capability",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="repository folder to write")
    p.add_argument(
        "--tile-backend",
        choices=("python", "onnxruntime_onnx", "tensorrt_plan"),
        help="ONNX: python (drq's OrtRunner, the default) or onnxruntime_onnx (Triton's backend); engines: "
        "tensorrt_plan (the default) or python (drq's TrtRunner, one engine; needed for drq's plugins)",
    )
    p.add_argument("--scale", type=int, help="upscaling factor (default: the ONNX model's drq.scale)")
    add_tiling_arguments(p)
    p.add_argument("--max-pixels", type=int, help="pixel limit per image (default: drq's)")
    p.add_argument("--instances", type=int, default=2, help="image model instances (parallel requests)")
    p.add_argument("--tile-instances", type=int, default=1, help="tile model instances")
    p.add_argument(
        "--threads", type=int, default=0, help="python tile model: onnxruntime threads (0: default)"
    )
    p.add_argument("--max-batch", type=int, default=8, help="tiles the dynamic batcher merges per execution")
    p.add_argument("--batch-delay-us", type=int, default=2000, help="how long the batcher waits to merge")
    p.add_argument("--queue-size", type=int, default=16, help="image requests waiting before 503")
    p.add_argument("--queue-timeout-ms", type=int, default=60000, help="image request queue timeout (503)")
    p.add_argument("--tile-queue-size", type=int, default=64, help="tile requests waiting before 503")
    p.add_argument("--tile-queue-timeout-ms", type=int, default=30000, help="tile request queue timeout")
    p.add_argument("--gpu", action="store_true", help="onnxruntime_onnx: run on the GPU (KIND_GPU)")
    p.add_argument("--overwrite", action="store_true", help="replace a repository drq wrote before")
    return p


def _onnx_facts(path: Path) -> tuple[str, str, int | None]:
    """(input name, output name, drq.scale or None) of an ONNX file."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # onnx raises several unrelated types for a bad file
        raise RepositoryError(f"{path}: not a readable ONNX model ({err.__class__.__name__})") from err
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise RepositoryError(f"{path}: expected one input and one output")
    meta = {p.key: p.value for p in model.metadata_props}
    scale = meta.get("drq.scale")
    return (
        model.graph.input[0].name,
        model.graph.output[0].name,
        int(scale) if scale and scale.isdigit() else None,
    )


def _engines(specs: list[str]) -> tuple[dict[str, Path], Path, Profile, str]:
    """plans by compute capability, the ONNX file named by the manifests, their profile, input name."""
    plans: dict[str, Path] = {}
    profiles, onnx_names, inputs = set(), set(), set()
    for spec in specs:
        path = Path(spec.partition("=")[2] if "=" in spec else spec)
        manifest = load_manifest(manifest_path(path))
        if manifest.compute_capability in plans:
            raise RepositoryError(
                f"{path}: a second engine for compute capability {manifest.compute_capability}"
            )
        plans[manifest.compute_capability] = path
        profiles.add(manifest.profile)
        onnx_names.add(manifest.onnx)
        inputs.add(manifest.input_name)
    if len(profiles) != 1 or len(onnx_names) != 1 or len(inputs) != 1:
        raise RepositoryError("--engine: the engines must share one ONNX model, input name and profile")
    first = next(iter(plans.values()))
    return plans, first.parent / onnx_names.pop(), profiles.pop(), inputs.pop()


def _profile_dims(profile: Profile) -> tuple[int, int, int]:
    """Per-sample dims (C, H, W) of a profile: fixed where min == max, else -1."""
    c, h, w = (lo if lo == hi else -1 for lo, hi in zip(profile.min[1:], profile.max[1:], strict=True))
    return c, h, w


def _engine_files(engines: dict[str, Path], kind: str) -> tuple[dict[str, str], dict[str, Path]]:
    """(cc -> plan name for cc_model_filenames, files to copy) for the engines and the tile kind."""
    if kind == "onnxruntime_onnx":
        raise RepositoryError("--tile-backend onnxruntime_onnx: needs --onnx")
    if kind == "python":
        if len(engines) != 1:
            raise RepositoryError(
                "--tile-backend python: drq's TrtRunner serves one engine; pass one --engine"
            )
        engine = next(iter(engines.values()))
        return {}, {"model.plan": engine, "model.plan.json": manifest_path(engine)}
    plans = {cc: f"model_sm{cc.replace('.', '')}.plan" for cc in engines}
    return plans, {plans[cc]: path for cc, path in engines.items()}


def _tile_spec(
    args: argparse.Namespace,
    kind: str,
    names: tuple[str, str],
    plans: dict[str, str],
    profile_max: tuple[int, ...] | None,
) -> TileModelSpec:
    # An engine cannot run more tiles at once than its profile's max batch.
    max_batch = args.max_batch if profile_max is None else min(args.max_batch, profile_max[0])
    return TileModelSpec(
        kind=kind,  # type: ignore[arg-type]
        input=names[0],
        output=names[1],
        max_batch=max_batch,
        batch_delay_us=args.batch_delay_us,
        queue=QueueLimits(args.tile_queue_size, args.tile_queue_timeout_ms),
        instances=args.tile_instances,
        threads=args.threads,
        gpu=args.gpu or args.engine is not None,
        plans=plans,
    )


def main(argv: list[str]) -> int:
    """Entry point of `drq triton-repo`."""
    from drq.imaging.io import DEFAULT_MAX_PIXELS

    args = _parser().parse_args(argv)
    if args.onnx is not None:
        if not args.onnx.is_file():
            raise RepositoryError(f"{args.onnx}: no such ONNX file")
        kind = args.tile_backend or "python"
        if kind == "tensorrt_plan":
            raise RepositoryError("--tile-backend tensorrt_plan: needs --engine (build one with drq build)")
        onnx_path, profile_max, plans, files = args.onnx, None, {}, {"model.onnx": args.onnx}
    else:
        engines, onnx_path, profile, _ = _engines(args.engine)
        profile_max = profile.max
        kind = args.tile_backend or "tensorrt_plan"
        plans, files = _engine_files(engines, kind)
    if not onnx_path.is_file():
        raise RepositoryError(f"{onnx_path}: the ONNX file is needed for tensor names, scale and overlap")
    input_name, output_name, scale = _onnx_facts(onnx_path)
    scale = args.scale or scale
    if scale is None:
        raise RepositoryError(f"{onnx_path}: no drq.scale metadata; pass --scale")
    tiling = resolve_tiling(args, onnx_path, profile_max)
    if tiling.note:
        print(tiling.note)
    tile = _tile_spec(args, kind, (input_name, output_name), plans, profile_max)
    if args.engine is not None:  # the profile's H and W where it fixes them, -1 where it ranges
        tile = dataclasses.replace(tile, dims=_profile_dims(profile))
    image = ImageModelSpec(
        scale=scale,
        tile=min(tiling.tile),
        overlap=tiling.overlap,
        tile_batch=tiling.batch,
        max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
        queue=QueueLimits(args.queue_size, args.queue_timeout_ms),
        instances=args.instances,
    )
    out = write_repository(args.output, image, tile, files, overwrite=args.overwrite)
    print(f"wrote {out} (x{scale}, tile {image.tile}, overlap {image.overlap}, tile model {kind})")
    return 0
