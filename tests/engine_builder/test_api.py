"""The Python API on a network defined only here (SRVGGNetCompact-like, random weights): quantize from
arrays or a folder, export with every lowering, onnxruntime against the torch simulation, identity
checks, a TensorRT-RTX build, and the README's example run as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from calib.api import CUSTOM_ARCH, infer_scale, module_class, simulate_model, state_dict_sha256
from calib.calibrate import QuantizeConfig
from calib.errors import CalibError
from calib.plan import PlanConfig
from drq.errors import RecipeError
from drq.recipe import load_recipe, save_recipe
from engine_builder.api import export_model, quantize_model
from engine_builder.errors import ExportError
from engine_builder.lowerings.registry import LOWERINGS
from serve.runtime.ort import OrtRunner
from tests.engine_builder.rtx_engine import build_rtx_engine

REPO = Path(__file__).resolve().parents[2]


class CompactSR(nn.Module):
    """Real-ESRGAN's SRVGGNetCompact shape, small: conv + PReLU body, conv to 3*S^2, PixelShuffle, plus
    the nearest-upsampled input as a residual."""

    def __init__(self, nf: int = 8, convs: int = 3, scale: int = 2) -> None:
        super().__init__()
        self.scale = scale
        body: list[nn.Module] = [nn.Conv2d(3, nf, 3, padding=1), nn.PReLU(nf)]
        for _ in range(convs):
            body += [nn.Conv2d(nf, nf, 3, padding=1), nn.PReLU(nf)]
        body.append(nn.Conv2d(nf, 3 * scale * scale, 3, padding=1))
        self.body = nn.ModuleList(body)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


CONFIGS = {
    "int8": QuantizeConfig(method="minmax", w_bits=8, a_bits=8, budget="uniform", images=4, crop=16),
    "split": QuantizeConfig(method="drq", w_bits=8, a_bits=8, budget="split", images=4, crop=16),
    "b-bit": QuantizeConfig(method="drq", w_bits=8, a_bits=8, budget="b-bit", images=4, crop=16),
    "fp8": QuantizeConfig(method="fp8", w_bits=8, a_bits=8, budget="fp8", images=4, crop=16, all_layers=True),
    # the mixed plan starts from a split calibration and checks itself on held-out images
    "mixed": QuantizeConfig(method="drq", w_bits=8, a_bits=8, budget="split", images=4, crop=16),
}
# Which recipe each lowering exports (None: the float model).
LOWERING_RECIPES = {
    "fp32": None,
    "fp16": None,
    "qdq": "int8",
    "fakequant": "int8",
    "drq-split": "split",
    "drq-plugin": "b-bit",
    "fp8": "fp8",
    "mixed": "mixed",
}


def _net() -> CompactSR:
    torch.manual_seed(0)
    return CompactSR().eval()


def _lr_images(count: int = 6) -> list[np.ndarray]:
    """LR images as a user would pass them: H x W x 3 uint8 of different sizes."""
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (20 + i, 24, 3), dtype=np.uint8) for i in range(count)]


@pytest.fixture(scope="module")
def net() -> CompactSR:
    return _net()


@pytest.fixture(scope="module")
def recipes(net: CompactSR) -> dict:
    out = {
        name: quantize_model(net, _lr_images(), config) for name, config in CONFIGS.items() if name != "mixed"
    }
    out["mixed"] = quantize_model(net, _lr_images(), CONFIGS["mixed"], plan=PlanConfig(), holdout=2)
    return out


def test_every_lowering_is_covered() -> None:
    assert set(LOWERING_RECIPES) == set(LOWERINGS)


def test_quantize_model_writes_a_custom_recipe_and_leaves_the_model_alone(net, recipes, tmp_path) -> None:
    before = state_dict_sha256(net)
    recipe = recipes["int8"]
    assert recipe.model.arch == CUSTOM_ARCH and recipe.model.scale == 2
    assert recipe.model.state_dict_sha256 == before and recipe.model.checkpoint_sha256 == ""
    assert recipe.model.module_class == f"{__name__}.CompactSR"
    assert list(recipe.layers) == [f"body.{i}" for i in (0, 2, 4, 6, 8)]
    assert recipe.calibration.images == 4 and recipe.calibration.crop == 16
    assert all(isinstance(m, nn.Conv2d) for m in net.body[::2])  # not wrapped: quantize_model copied it
    assert state_dict_sha256(net) == before
    save_recipe(recipe, tmp_path / "r.json")
    assert load_recipe(tmp_path / "r.json") == recipe


def test_state_dict_sha256_follows_the_weights() -> None:
    a, b = _net(), _net()
    assert state_dict_sha256(a) == state_dict_sha256(b)
    with torch.no_grad():
        b.body[0].weight[0, 0, 0, 0] += 1e-6
    assert state_dict_sha256(a) != state_dict_sha256(b)
    assert module_class(a) == f"{__name__}.CompactSR" and infer_scale(CompactSR(scale=3)) == 3


def test_quantize_model_from_a_folder_of_hr_images(net, tmp_path) -> None:
    rng = np.random.default_rng(2)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    config = QuantizeConfig(method="minmax", w_bits=8, a_bits=8, budget="uniform", images=3, crop=16)
    recipe = quantize_model(net, tmp_path, config)
    assert recipe.calibration.images == 3 and recipe.model.state_dict_sha256 == state_dict_sha256(net)


def test_bad_calibration_input_is_named(net, tmp_path) -> None:
    config = CONFIGS["int8"]
    with pytest.raises(CalibError, match="calibration image 1: 8x8 is smaller than the crop 16"):
        quantize_model(net, [np.zeros((20, 20, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)], config)
    with pytest.raises(CalibError, match=r"calibration image 0: expected H x W x 3 uint8 .* shape \(4, 4\)"):
        quantize_model(net, [np.zeros((4, 4))], config)
    with pytest.raises(CalibError, match="no such calibration folder"):
        quantize_model(net, tmp_path / "missing", config)
    with pytest.raises(CalibError, match="must return 1x3x"):
        quantize_model(nn.Conv2d(3, 3, 3), _lr_images(), config)


@pytest.mark.parametrize("lowering", sorted(LOWERING_RECIPES))
def test_every_lowering_runs_in_onnxruntime_like_the_torch_simulation(
    net, recipes, lowering, tmp_path
) -> None:
    recipe = recipes[LOWERING_RECIPES[lowering]] if LOWERING_RECIPES[lowering] else None
    path = tmp_path / f"{lowering}.onnx"
    graph = export_model(net, recipe, lowering, path)
    assert onnx.load(str(path)).graph.node and graph.graph.output[0].name == "sr"
    x = np.random.default_rng(3).random((1, 3, 18, 22), dtype=np.float32)
    reference = net if recipe is None else simulate_model(net, recipe)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    got = OrtRunner(path, threads=1).run(x)
    assert got.shape == (1, 3, 36, 44)
    atol = {"fp16": 2e-2, "drq-plugin": 1e-3}.get(lowering, 1e-4)
    np.testing.assert_allclose(got, expected, atol=atol)
    if recipe is not None:  # quantized graphs differ from the float model: the test sees quantization
        with torch.no_grad():
            assert np.abs(expected - net(torch.from_numpy(x)).numpy()).max() > 1e-4


def test_export_refuses_other_weights_and_missing_recipes(net, recipes) -> None:
    other = _net()
    with torch.no_grad():
        other.body[2].bias += 0.5
    with pytest.raises(RecipeError, match="state_dict sha256 differs from the recipe's"):
        export_model(other, recipes["fp8"], "fp8")
    with pytest.raises(ExportError, match="lowering 'qdq': needs a recipe"):
        export_model(net, None, "qdq")
    with pytest.raises(ExportError, match="the fp8 lowering needs an fp8 recipe"):
        export_model(net, recipes["int8"], "fp8")


def test_drq_export_names_the_api_for_custom_recipes(recipes, tmp_path, capsys) -> None:
    from drq.cli import main

    save_recipe(recipes["int8"], tmp_path / "custom.json")
    code = main(["export", "--recipe", str(tmp_path / "custom.json"), "-o", str(tmp_path / "x.onnx")])
    assert code == 2 and not (tmp_path / "x.onnx").exists()
    assert "'custom' recipes belong to a module outside the zoo" in capsys.readouterr().err


@pytest.mark.rtx
@pytest.mark.parametrize("lowering", ["fp32", "fp16", "qdq", "drq-split", "fakequant", "fp8"])
def test_tensorrt_rtx_builds_the_exported_graph(net, recipes, lowering) -> None:
    """Every lowering but drq-plugin, whose TensorRT plugins need full TensorRT (>= 10.6)."""
    recipe = recipes[LOWERING_RECIPES[lowering]] if LOWERING_RECIPES[lowering] else None
    targets = ("SM89",) if lowering == "fp8" else ()  # FP8 needs compute capability 8.9+
    assert build_rtx_engine(export_model(net, recipe, lowering), targets) > 0


def _readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 1, "the Python API section has one python example"
    return blocks[0]


def test_readme_python_example_runs(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(_readme_example(), "README.md (Python API)", "exec"), namespace)
    assert (tmp_path / "build" / "compact_x2_fp8.onnx").is_file()
    assert (tmp_path / "build" / "compact_x2_fp8.json").is_file()
