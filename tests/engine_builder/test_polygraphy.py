"""Polygraphy `run --onnxrt` comparisons of every lowering against fp32 (and against its own float
emulation), with inputs saved once and loaded by every comparison.

The fp32 run is a real `polygraphy run` subprocess (the command a user types); the comparisons call the
same CLI entry point in-process (`polygraphy.tools.main(argv)`), which saves the ~2 s interpreter and
import start per comparison. Tolerances: fp16 within 1e-3 (half-precision weights); the INT8 lowerings
within 0.03 of fp32 (the quantization error of this tiny net: max 0.011 measured) and within 1e-6 of the
`fakequant` emulation of the same recipe (the same values through float convs; drq-plugin runs its
ONNX local-function bodies).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest

pytest.importorskip("polygraphy")
pytest.importorskip("onnxruntime")
pytest.importorskip("torch")

from engine_builder.export.torch_export import export_float_onnx  # noqa: E402
from engine_builder.lowerings.common import LoweringOptions  # noqa: E402
from engine_builder.lowerings.registry import lower  # noqa: E402
from tests.engine_builder.test_export import TinySR, make_recipe  # noqa: E402

# polygraphy 0.53 reads its plugin entry points through a deprecated importlib API
pytestmark = pytest.mark.filterwarnings("ignore:SelectableGroups dict interface:DeprecationWarning")
SHAPE = "lr:[1,3,16,16]"
QUANT_ATOL = "0.03"
# (name, lowering, budget, options, fp32 atol)
CASES = [
    ("fp16", "fp16", None, LoweringOptions(), "1e-3"),
    ("qdq", "qdq", "uniform", LoweringOptions(), QUANT_ATOL),
    ("drq-split", "drq-split", "split", LoweringOptions(), QUANT_ATOL),
    ("drq-split-outlier-ch", "drq-split", "split", LoweringOptions(outlier_channels_only=True), QUANT_ATOL),
    ("fakequant-paper", "fakequant", "paper", LoweringOptions(), QUANT_ATOL),
    ("drq-plugin", "drq-plugin", "b-bit", LoweringOptions(), QUANT_ATOL),  # ONNX local functions in ORT
]
# quantizing lowering -> the fakequant model of the same recipe it must equal
EMULATION = {"qdq": "fakequant-uniform", "drq-split": "fakequant-split", "drq-plugin": "fakequant-b-bit"}


def polygraphy(*argv: str) -> int:
    """`polygraphy <argv>` in this process; returns its exit status."""
    from polygraphy.tools import main

    return int(main(list(argv)))


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The lowered models, the saved inputs and the fp32 / fakequant outputs on them."""
    folder = tmp_path_factory.mktemp("polygraphy")
    net = TinySR().eval()
    graph = export_float_onnx(net, scale=2)
    recipes = {b: make_recipe(net, b) for b in ("uniform", "split", "paper", "b-bit")}
    paths = {"fp32": folder / "fp32.onnx"}
    onnx.save(graph, paths["fp32"])
    for name, lowering, budget, options, _ in CASES:
        paths[name] = folder / f"{name}.onnx"
        onnx.save(lower(lowering, graph, recipes[budget] if budget else None, options), paths[name])
    for budget in ("uniform", "split", "b-bit"):
        paths[f"fakequant-{budget}"] = folder / f"fakequant-{budget}.onnx"
        onnx.save(lower("fakequant", graph, recipes[budget]), paths[f"fakequant-{budget}"])
    inputs, fp32_out = folder / "inputs.json", folder / "fp32_out.json"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from polygraphy.tools import main; sys.exit(main())",
            "run",
            str(paths["fp32"]),
            "--onnxrt",
            "--input-shapes",
            SHAPE,
            "--val-range",
            "lr:[0,1]",
            "--seed",
            "3",
            "--save-inputs",
            str(inputs),
            "--save-outputs",
            str(fp32_out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    paths["inputs"], paths["fp32_out"] = inputs, fp32_out
    for budget in ("uniform", "split", "b-bit"):
        out = folder / f"fakequant-{budget}_out.json"
        code = polygraphy(
            "run",
            str(paths[f"fakequant-{budget}"]),
            "--onnxrt",
            "--load-inputs",
            str(inputs),
            "--save-outputs",
            str(out),
        )
        assert code == 0
        paths[f"fakequant-{budget}_out"] = out
    return paths


def compare(saved: dict[str, Path], model: str, expected: str, atol: str) -> int:
    """`polygraphy run MODEL --onnxrt` on the saved inputs against saved outputs (max |error| <= atol)."""
    return polygraphy(
        "run",
        str(saved[model]),
        "--onnxrt",
        "--load-inputs",
        str(saved["inputs"]),
        "--load-outputs",
        str(saved[expected]),
        "--atol",
        atol,
        "--rtol",
        "0",
        "--check-error-stat",
        "max",
    )


@pytest.mark.parametrize("name,atol", [(c[0], c[4]) for c in CASES])
def test_lowering_matches_fp32_in_polygraphy(saved: dict[str, Path], name: str, atol: str) -> None:
    assert compare(saved, name, "fp32_out", atol) == 0


@pytest.mark.parametrize("name", sorted(EMULATION))
def test_int8_lowering_equals_its_float_emulation_in_polygraphy(saved: dict[str, Path], name: str) -> None:
    assert compare(saved, name, f"{EMULATION[name]}_out", "1e-6") == 0


def test_comparison_can_fail(saved: dict[str, Path]) -> None:
    # INT8 is not fp32 to 1e-4: the comparison does look at the values
    assert compare(saved, "qdq", "fp32_out", "1e-4") != 0
