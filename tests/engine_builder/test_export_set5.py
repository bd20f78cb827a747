"""Every lowering, run by onnxruntime on the CPU, reproduces the torch simulation of its recipe on
Set5 x4 within 0.01 dB PSNR-Y (IMDN x4, recipes from a quick calibration on BSD200 crops)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

pytestmark = pytest.mark.shared_data

CASES = [  # (budget, method, a_bits, w_bits, lowering)
    ("uniform", "minmax", 8, 8, "qdq"),
    ("split", "drq", 8, 8, "drq-split"),
    ("b-bit", "drq", 8, 8, "drq-plugin"),
    ("paper", "drq", 4, 4, "fakequant"),
    ("uniform", "minmax", 4, 4, "fakequant"),
    ("split", "drq", 4, 4, "drq-split"),  # outlier codes saturate inside int8 below 8 bits
]


@pytest.fixture(scope="module")
def imdn(shared_dir: Path):
    from calib.models import load_pretrained

    weights = shared_dir / "sr_weights" / "imdn_x4.pth"
    if not weights.is_file():
        pytest.skip(f"needs {weights}")
    torch.set_num_threads(2)
    return weights, load_pretrained("imdn", 4, weights)


@pytest.fixture(scope="module")
def calib_batches(shared_dir: Path):
    from calib.calibrate import make_batches
    from calib.imaging.datasets import calib_crops

    return make_batches(calib_crops(shared_dir / "sr_calib" / "bsd200", 4, 32, 4, seed=0), 2)


@pytest.fixture(scope="module")
def set5(set5_x4: Path):
    from calib.imaging.datasets import open_dataset

    return open_dataset(set5_x4, 4)


def _recipe(imdn, batches, budget, method, a_bits, w_bits):
    import copy

    from calib.calibrate import QuantizeConfig, quantize

    weights, loaded = imdn
    config = QuantizeConfig(method=method, budget=budget, a_bits=a_bits, w_bits=w_bits, images=4, crop=32, epochs=0)
    model = copy.deepcopy(loaded.model)
    recipe, _ = quantize(model, "imdn", 4, loaded.checkpoint_sha256, str(weights), batches, config)
    return recipe, model.eval()


def _ort_upscaler(model: onnx.ModelProto):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return lambda lr: sess.run(None, {"lr": lr})[0]


@pytest.mark.parametrize("budget,method,a_bits,w_bits,lowering", CASES)
def test_lowering_reproduces_torch_simulation_on_set5(imdn, calib_batches, set5, budget, method, a_bits, w_bits,
                                                      lowering) -> None:
    from calib.imaging.evaluate import evaluate_dataset
    from calib.inference import torch_upscaler
    from engine_builder.export.torch_export import export_float_onnx
    from engine_builder.lowerings.registry import lower

    recipe, simulated = _recipe(imdn, calib_batches, budget, method, a_bits, w_bits)
    graph = lower(lowering, export_float_onnx(simulated, scale=4), recipe)
    sim = evaluate_dataset(torch_upscaler(simulated), set5, 4)
    onnx_result = evaluate_dataset(_ort_upscaler(graph), set5, 4)
    per_image = np.array([p for _, p, _ in onnx_result.per_image]) - np.array([p for _, p, _ in sim.per_image])
    assert abs(onnx_result.psnr - sim.psnr) < 0.01, (lowering, onnx_result.psnr, sim.psnr)
    assert np.abs(per_image).max() < 0.05  # float-order differences flip a few roundings per image
    fp = evaluate_dataset(torch_upscaler(imdn[1].model), set5, 4)
    assert sim.psnr < fp.psnr + 0.05  # it is a quantized model (sanity: not above the FP result)
