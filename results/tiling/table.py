"""Render results/tiling/README.md's table from the `drq eval --json` files of results/tiling/run.sh.

Usage (repository root): python results/tiling/table.py   (prints the Markdown table)
Each row is one model; each cell the PSNR-Y of tiled minus whole-image inference (dB) and, in brackets,
the images whose tiled PSNR moved by more than 0.0001 dB. A missing JSON file is shown as "not run".
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = ("carn_m", "imdn_ntire", "pan", "imdn", "rfdn", "rlfn")
TILES = (96, 48)
SETS = ("Set14", "B100")


def _load(name: str) -> dict | None:
    path = HERE / "json" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _radius(onnx_path: str) -> str:
    """The receptive-field radius serve.receptive_field reads from the model (what the overlap comes from)."""
    import onnx

    from serve.receptive_field import receptive_field

    path = HERE.parents[1] / onnx_path
    if not path.is_file():
        return "?"
    field = receptive_field(onnx.load(str(path), load_external_data=False))
    return f"{field.radius}{'' if field.exact else ' (approx.)'}"


def _scores(payload: dict) -> dict[str, dict]:
    return {r["name"]: r for r in payload["results"]}


def _cell(whole: dict, tiled: dict | None, dataset: str) -> str:
    if tiled is None:
        return "not run"
    w, t = _scores(whole)[dataset], _scores(tiled)[dataset]
    moved = sum(
        abs(a["psnr"] - b["psnr"]) > 1e-4 for a, b in zip(w["per_image"], t["per_image"], strict=True)
    )
    delta = t["psnr"] - w["psnr"]
    shown = "0.0000" if abs(delta) < 5e-5 else f"{delta:+.4f}"
    return f"{shown} ({moved}/{w['images']})"


def table() -> str:
    head = ["model", "radius", *[f"{s} whole" for s in SETS]]
    head += [f"{s} tile {t} (overlap)" for t in TILES for s in SETS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in MODELS:
        whole = _load(f"{model}_whole")
        if whole is None:
            lines.append(f"| {model} | " + " | ".join(["not run"] * (len(head) - 1)) + " |")
            continue
        tiled = {t: _load(f"{model}_tile{t}") for t in TILES}
        overlaps = {t: tiled[t]["model"]["overlap"] for t in TILES if tiled[t] is not None}
        radius = _radius(whole["model"]["onnx"])
        row = [model, str(radius), *[f"{_scores(whole)[s]['psnr']:.4f}" for s in SETS]]
        for t in TILES:
            row += [f"{_cell(whole, tiled[t], s)} [{overlaps.get(t, '-')}]" for s in SETS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
