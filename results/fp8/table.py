"""Print the tables of results/fp8/README.md from the committed eval JSON and recipes (repo root).

Every number is read from `drq eval --json` output (`*.eval.json`) and `results/zoo_fp32.json`; the
layer counts from the recipes. Usage: `python results/fp8/table.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path("results/fp8")
SETS = ("Set5", "Set14", "B100")
ROWS = (
    ("fp32", "FP32 (results/zoo_fp32.json)", ""),
    ("int8", "INT8 minmax W8A8, `qdq`", "pooled-input convs in float"),
    ("fp8", "FP8 E4M3, `fp8`", "head, upsampler, tail, pooled-input convs in float"),
    ("fp8_all", "FP8 E4M3 `--all-layers`, `fp8`", "every conv"),
)


def _cells(arch: str, key: str, fp32: dict) -> tuple[str, list[str]] | None:
    if key == "fp32":
        return "none", [f"{fp32[(arch, s)]['psnr']:.4f} / {fp32[(arch, s)]['ssim']:.4f}" for s in SETS]
    path = RESULTS / f"{arch}_x4_{key}.eval.json"
    if not path.is_file():
        return None
    scores = {r["name"]: r for r in json.loads(path.read_text())["results"]}
    layers = len(json.loads((RESULTS / f"{arch}_x4_{key}.recipe.json").read_text())["layers"])
    gaps = {s: scores[s]["psnr"] - fp32[(arch, s)]["psnr"] for s in SETS}
    cells = [f"{scores[s]['psnr']:.4f} / {scores[s]['ssim']:.4f} ({gaps[s]:+.2f})" for s in SETS]
    return str(layers), cells


def main() -> None:
    zoo = json.loads(Path("results/zoo_fp32.json").read_text())["results"]
    fp32 = {(r["arch"], r["dataset"]): r for r in zoo if r["scale"] == 4}
    out: list[str] = []
    for arch in ("imdn", "pan"):
        header = " | ".join(f"{s} PSNR / SSIM (gap)" for s in SETS)
        out += [
            f"### {arch} x4",
            "",
            f"| row | quantized convs | {header} |",
            "|---|---|" + "---|" * len(SETS),
        ]
        for key, label, note in ROWS:
            found = _cells(arch, key, fp32)
            if found is not None:
                layers = found[0] if not note else f"{found[0]} ({note})"
                out.append(f"| {label} | {layers} | " + " | ".join(found[1]) + " |")
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
