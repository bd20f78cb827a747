"""engine_builder.ort_static: onnxruntime's quantize_static, alone and with drq's plan forced in."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from drq.recipe import Recipe, save_recipe
from engine_builder.ort_static import plan_overrides
from tests.engine_builder.test_export import run_ort
from tests.engine_builder.test_lowering_mixed import PLAN, _mixed, float_model, lr, net  # noqa: F401

pytest.importorskip("onnxruntime")

REPO = Path(__file__).resolve().parents[2]


def static_quantize(
    model: onnx.ModelProto, crops: list[np.ndarray], weight_type: str, recipe: Recipe | None = None
) -> onnx.ModelProto:
    """`engine_builder.ort_static.static_quantize` in a fresh interpreter: importing NVIDIA ModelOpt
    (tests/engine_builder/test_modelopt_cache.py) patches onnxruntime's quantization calibrators for the
    rest of the process, after which quantize_static finds no range for the graph input."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        onnx.save(model, str(folder / "float.onnx"))
        np.save(folder / "crops.npy", np.stack(crops))
        if recipe is not None:
            save_recipe(recipe, folder / "recipe.json")
        script = textwrap.dedent(
            f"""
            import numpy as np, onnx
            from pathlib import Path
            from drq.recipe import load_recipe
            from engine_builder.ort_static import static_quantize
            folder = Path({str(folder)!r})
            recipe = load_recipe(folder / "recipe.json") if (folder / "recipe.json").exists() else None
            crops = list(np.load(folder / "crops.npy"))
            out = static_quantize(onnx.load(str(folder / "float.onnx")), crops, {weight_type!r}, recipe)
            onnx.save(out, str(folder / "quant.onnx"))
            """
        )
        proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return onnx.load(str(folder / "quant.onnx"))


def test_plan_scales_are_forced_and_split_fp16_convs_excluded(net, float_model, lr) -> None:  # noqa: F811
    recipe = _mixed(net, PLAN)
    overrides, exclude = plan_overrides(float_model, recipe)
    assert len(exclude) == sum(1 for f in PLAN.values() if f != "int8")
    crops = [lr, lr[:, :, ::-1].copy()]
    out = static_quantize(float_model, crops, "uint8", recipe)
    inits = {t.name: numpy_helper.to_array(t) for t in out.graph.initializer}
    quantized_inputs = 0
    for node in (n for n in out.graph.node if n.op_type == "QuantizeLinear"):
        if node.input[0] in overrides:
            want = overrides[node.input[0]][0]
            assert inits[node.input[1]] == want["scale"] and inits[node.input[2]] == want["zero_point"]
            quantized_inputs += 1
    assert quantized_inputs >= 1
    ops = Counter(n.op_type for n in out.graph.node)
    assert ops["QuantizeLinear"] > quantized_inputs  # the glue is quantized too
    ref = run_ort(float_model, lr)
    assert 0 < np.abs(run_ort(out, lr) - ref).mean() < 0.05


def test_without_a_recipe_it_is_plain_quantize_static(float_model, lr) -> None:  # noqa: F811
    out = static_quantize(float_model, [lr], "int8")
    weights = [
        n for n in out.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("_quantized")
    ]
    assert weights  # onnxruntime's own weight codes
    assert dict((p.key, p.value) for p in out.metadata_props)["drq.lowering"] == "ort-static"
