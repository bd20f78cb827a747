"""Every quantizing lowering, run by onnxruntime on the CPU, reproduces the torch simulation of its recipe
(calib.quantizers.apply_recipe) on Set5 x4 within 0.01 dB mean PSNR-Y (IMDN x4; recipes from ranges
observed on two BSD200 LR crops, every conv quantized)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

# about 10 s per case on an idle 2-core machine, 25 s under load
pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

CASES = [  # (budget, a_bits = w_bits, lowering)
    ("uniform", 8, "qdq"),
    ("split", 8, "drq-split"),
    ("b-bit", 8, "drq-plugin"),
    ("paper", 4, "fakequant"),
]


@pytest.fixture(scope="module")
def imdn(shared_dir: Path):
    from calib.models import load_pretrained
    from calib.quantizers import quantizable_layers
    from drq.imaging.datasets import calib_crops

    weights = shared_dir / "sr_weights" / "imdn_x4.pth"
    if not weights.is_file():
        pytest.skip(f"needs {weights}")
    torch.set_num_threads(2)
    loaded = load_pretrained("imdn", 4, weights)
    crops = [
        torch.from_numpy(c[None]) for c in calib_crops(shared_dir / "sr_calib" / "bsd200", 4, 48, 2, seed=0)
    ]
    return loaded, tuple(quantizable_layers(loaded.model)), crops


@pytest.fixture(scope="module")
def set5(set5_x4: Path):
    from drq.imaging.datasets import open_dataset

    return open_dataset(set5_x4, 4)


def _ort_upscaler(model: onnx.ModelProto):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda lr: sess.run(None, {"lr": lr})[0]


@pytest.mark.parametrize("budget,bits,lowering", CASES)
def test_lowering_reproduces_torch_simulation_on_set5(imdn, set5, budget, bits, lowering) -> None:
    from calib.inference import torch_upscaler
    from calib.quantizers import apply_recipe
    from drq.imaging.evaluate import evaluate_dataset
    from engine_builder.export.torch_export import export_float_onnx
    from engine_builder.lowerings.registry import lower
    from tests.engine_builder.test_export import make_recipe

    loaded, names, crops = imdn
    recipe = make_recipe(loaded.model, budget, a_bits=bits, w_bits=bits, x=crops, names=names)
    simulated = copy.deepcopy(loaded.model)
    apply_recipe(simulated, recipe)
    simulated.eval()
    graph = lower(lowering, export_float_onnx(simulated, scale=4), recipe)
    sim = evaluate_dataset(torch_upscaler(simulated), set5, 4)
    got = evaluate_dataset(_ort_upscaler(graph), set5, 4)
    per_image = np.array([p for _, p, _ in got.per_image]) - np.array([p for _, p, _ in sim.per_image])
    assert abs(got.psnr - sim.psnr) < 0.01, (lowering, got.psnr, sim.psnr)
    # float summation order differs (ORT vs torch convs), which flips a few roundings downstream
    assert np.abs(per_image).max() < 0.05, per_image
    assert 20.0 < sim.psnr < 32.5  # a working quantized IMDN x4 (FP: 32.2 dB)
