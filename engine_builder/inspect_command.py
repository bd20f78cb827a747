"""`drq inspect`: per-layer precision, MACs and bytes of an ONNX graph or a built engine, against FP16.

    drq inspect MODEL.onnx|MODEL.plan [--size WIDTHxHEIGHT] [-o REPORT]

Prints the totals and writes REPORT.json and REPORT.md (default: beside the model, `MODEL.inspect.*`).
The size is the LR input the MACs and bytes are counted at, WIDTHxHEIGHT as `drq bench --size` takes it
(default 256x256 for an ONNX, the build profile's opt shape for an engine).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from drq.cli_args import CommandParser


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="drq inspect",
        description="What an ONNX graph or engine costs per layer: precision of inputs, weights and "
        "compute, MACs, bytes read and written, glue nodes, and totals against the FP16 graph of the "
        "same model; for an engine also TensorRT's own layer information (engine inspector).",
    )
    p.add_argument(
        "model", type=Path, help="ONNX model (drq export) or engine (drq build, with its manifest)"
    )
    p.add_argument(
        "--size", help="LR input WIDTHxHEIGHT the costs are counted at (default: 256x256 / the opt shape)"
    )
    p.add_argument("-o", "--output", type=Path, help="report path without suffix (writes .json and .md)")
    return p


def main(argv: list[str]) -> int:
    """Run `drq inspect`; returns 0 (user errors raise InspectError: one line, exit 2)."""
    args = _parser().parse_args(argv)
    from drq.artifacts import atomic_write_text
    from engine_builder.inspect import (
        InspectError,
        inspect_engine,
        inspect_onnx,
        load_onnx,
        parse_size,
        ratios,
        to_markdown,
    )

    size = parse_size(args.size) if args.size else None
    if not args.model.is_file():
        raise InspectError(f"{args.model}: no such file")
    if args.model.suffix in (".plan", ".engine", ".trt"):
        report = inspect_engine(args.model, size)
    else:
        report = inspect_onnx(load_onnx(args.model), size or (256, 256), str(args.model))
    base = args.output or args.model.with_name(args.model.name + ".inspect")
    json_path = atomic_write_text(
        base.with_name(base.name + ".json"), json.dumps(report.to_json(), indent=1) + "\n"
    )
    md_path = atomic_write_text(base.with_name(base.name + ".md"), to_markdown(report))
    t, ref, q = report.totals, report.reference, ratios(report)
    precisions = ", ".join(f"{k} {v / 1e9:.4g}" for k, v in sorted(t.conv_macs.items()))
    moved, ref_moved = (t.conv_bytes + t.glue_bytes) / 1e6, (ref.conv_bytes + ref.glue_bytes) / 1e6
    print(
        f"{args.model} at {report.size[0]}x{report.size[1]}: {len(report.rows)} nodes; conv GMACs "
        f"{t.macs / 1e9:.4g} ({precisions}) vs FP16 {ref.macs / 1e9:.4g} ({q['macs']:.2f}x); conv+glue "
        f"MB moved {moved:.2f} vs FP16 {ref_moved:.2f} ({q['bytes']:.2f}x); {t.glue_nodes} glue, "
        f"{t.qdq_nodes} Q/DQ nodes"
    )
    if report.engine_layers:
        print(f"engine inspector: {len(report.engine_layers)} TensorRT layers")
    for note in report.notes:
        print(f"note: {note}")
    print(f"wrote {json_path} and {md_path}", flush=True)
    return 0
