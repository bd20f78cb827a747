"""`drq export`: argument errors are one line, inputs are never overwritten, outputs are lowered ONNX."""

from __future__ import annotations

import hashlib
from pathlib import Path

import onnx
import pytest

from drq.cli import main as drq
from drq.recipe import save_recipe
from engine_builder.errors import ExportError
from engine_builder.export_command import main
from tests.engine_builder.test_export import TinySR, make_recipe


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipes") / "tiny.json"
    save_recipe(make_recipe(TinySR().eval(), "uniform"), path)
    return path


def test_needs_a_source() -> None:
    with pytest.raises(ExportError, match="give --recipe, or --arch with --weights and --scale"):
        main(["-o", "x.onnx"])


def test_refuses_to_overwrite_an_input(recipe_file: Path) -> None:
    before = hashlib.sha256(recipe_file.read_bytes()).hexdigest()
    with pytest.raises(ExportError, match=rf"{recipe_file}: is an input of this export"):
        main(["--recipe", str(recipe_file), "-o", str(recipe_file)])
    assert hashlib.sha256(recipe_file.read_bytes()).hexdigest() == before


def test_quantizing_lowering_needs_a_recipe(tmp_path: Path) -> None:
    with pytest.raises(
        ExportError, match="lowering 'qdq': needs --recipe; without one choose from fp32, fp16"
    ):
        main(
            [
                "--arch",
                "imdn",
                "--weights",
                str(tmp_path / "w.pth"),
                "--scale",
                "4",
                "--lowering",
                "qdq",
                "-o",
                str(tmp_path / "m.onnx"),
            ]
        )


def test_cli_prints_one_line_and_exits_2(recipe_file: Path, tmp_path: Path, capsys) -> None:
    code = drq(["export", "--recipe", str(recipe_file), "--arch", "imdn", "-o", str(tmp_path / "m.onnx")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "drq export: --recipe: the recipe names the model; drop --arch/--scale"
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.shared_data
def test_export_recipe_end_to_end(shared_dir: Path, tmp_path: Path) -> None:
    """IMDN x4: FP export, then a recipe export whose weights are checked against the recipe's sha256."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import onnxruntime as ort

    from calib.models import load_pretrained
    from calib.quantizers import quantizable_layers
    from drq.recipe import (
        CalibrationInfo,
        LayerRecipe,
        ModelIdentity,
        Recipe,
        UniformAct,
        WeightQuant,
        f32,
        load_recipe,
    )
    from engine_builder.lowerings.graph import metadata

    weights = shared_dir / "sr_weights" / "imdn_x4.pth"
    fp = tmp_path / "fp16.onnx"
    assert (
        main(
            ["--arch", "imdn", "--weights", str(weights), "--scale", "4", "--lowering", "fp16", "-o", str(fp)]
        )
        == 0
    )
    meta = metadata(onnx.load(str(fp)))
    assert meta["drq.lowering"] == "fp16" and meta["drq.scale"] == "4"
    # a recipe for the real model: every layer at 8-bit symmetric, scales from the weights themselves
    loaded = load_pretrained("imdn", 4, weights)
    layers = quantizable_layers(loaded.model)
    recipe = Recipe(
        model=ModelIdentity(
            arch="imdn", scale=4, checkpoint_sha256=loaded.checkpoint_sha256, checkpoint=str(weights)
        ),
        method="minmax",
        w_bits=8,
        a_bits=8,
        budget="uniform",
        weight_mode="per-channel",
        calibration=CalibrationInfo(images=0, crop=0, seed=0),
        layers={
            name: LayerRecipe(
                op="conv2d",
                weight=WeightQuant(
                    bits=8,
                    scale=tuple(
                        f32(float(v) / 127)
                        for v in m.weight.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-8)
                    ),
                    axis=0,
                ),
                act=UniformAct(bits=8, scale=f32(4.0 / 127)),
            )
            for name, m in layers.items()
        },
    )
    path = tmp_path / "r.json"
    save_recipe(recipe, path)
    out = tmp_path / "q.onnx"
    assert main(["--recipe", str(path), "-o", str(out)]) == 0  # default lowering for uniform INT8: qdq
    model = onnx.load(str(out))
    meta = metadata(model)
    assert meta["drq.lowering"] == "qdq" and meta["drq.recipe_sha256"] == load_recipe(path).sha256()
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == len(layers)
    y = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"lr": np.random.default_rng(0).random((1, 3, 12, 10), dtype=np.float32)}
    )[0]
    assert y.shape == (1, 3, 48, 40)
    # the recipe refuses a checkpoint with another hash
    other = shared_dir / "sr_weights" / "imdn_x3.pth"
    with pytest.raises(Exception, match="checkpoint sha256 differs|scale"):
        main(["--recipe", str(path), "--weights", str(other), "-o", str(tmp_path / "bad.onnx")])


def test_ort_cpu_export_needs_calibration_inputs() -> None:
    import numpy as np

    from engine_builder.export.pipeline import lower_module
    from engine_builder.lowerings.common import LoweringOptions

    net = TinySR().eval()
    recipe = make_recipe(net, "uniform")
    options = LoweringOptions(target="ort-cpu")
    with pytest.raises(ExportError, match=r"--target ort-cpu: qdq needs calibration images \(--calib DIR\)"):
        lower_module(net, 2, "qdq", recipe, options)
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    model = lower_module(net, 2, "qdq", recipe, options, arch="tiny", calib_inputs=[x])
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    producers = {o: n for n in model.graph.node for o in n.output}
    assert convs and all(producers[c.input[2]].op_type == "DequantizeLinear" for c in convs)  # int32 bias DQ
    assert {p.key: p.value for p in model.metadata_props}["drq.arch"] == "tiny"
