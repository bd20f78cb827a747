"""drq ablate's pieces: one layer's weights or input at a time, the rest FP, and everything restored."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image

from calib.ablate_command import _layer_rows, _only, _psnr, _restore
from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.quantizers import quant_layers
from drq.imaging.datasets import open_dataset
from drq.recipe import ModelIdentity
from tests.calib.nets import TinyShuffle


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    return open_dataset(tmp_path, 2)


def _quantized() -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    net = TinyShuffle().eval()
    crops = [np.random.default_rng(i).random((3, 16, 16), dtype=np.float32) for i in range(4)]
    model = copy.deepcopy(net)
    config = QuantizeConfig(method="drq", budget="split", w_bits=2, a_bits=3, crop=16, probe_size=16)
    _, stats = quantize(model, ModelIdentity("tiny", 2, ""), make_batches(crops, 2), config)
    return net, model, stats.to_dict() | stats.extra


def test_only_one_part_of_one_layer_is_quantized_and_restore_undoes_it() -> None:
    net, model, _ = _quantized()
    layers = quant_layers(model)
    name = next(iter(layers))
    x = torch.rand(1, 3, 12, 12)
    for part in ("weight", "act"):
        saved = _only(layers, name, part)
        assert [n for n, layer in layers.items() if layer.quant_enabled] == [name]
        assert (layers[name].a_quant is None) == (part == "weight")
        assert (layers[name].w_quant is None) == (part == "act")
        _restore(saved)
    assert all(layer.quant_enabled and layer.w_quant is not None for layer in layers.values())
    with torch.no_grad():
        assert not torch.equal(model(x), net(x))  # the whole quantized model again


def test_layer_rows_measure_each_layer_against_fp(dataset) -> None:
    net, model, bits = _quantized()
    fp = _psnr(net, dataset, 2)
    rows = _layer_rows(model, dataset, 2, fp, bits)
    assert [r["layer"] for r in rows] == list(quant_layers(model))
    assert all(r["weight_drop_db"] <= 0.05 and r["act_drop_db"] <= 0.05 for r in rows)
    assert any(r["weight_drop_db"] < 0 for r in rows) and any(r["act_drop_db"] < 0 for r in rows)
    assert {r["w_bits"] for r in rows} >= {2, 8} and {r["a_bits"] for r in rows} >= {3, 8}


def test_whole_model_only_report_has_no_layer_table() -> None:
    from calib.ablate_command import _markdown, _parser

    line = "--arch imdn --weights w --scale 4 --calib c --data d -o o --method drq+gptq --whole-model-only"
    args = _parser().parse_args(line.split())
    assert args.method == "drq+gptq" and args.whole_model_only
    payload = {
        "arch": "imdn", "scale": 4, "data": "Set5", "command": "drq ablate ...", "layers": [],
        "whole_model": {"FP": 32.0, "W4A4": 31.0, "W4A8": 31.5, "W8A4": 31.2},
        "sums": {"weight": 0, "act": 0},
    }  # fmt: skip
    text = _markdown(payload)
    assert (
        "| W4A8 | 31.500 | -0.500 |" in text and "| layer |" not in text and "Sum of single-layer" not in text
    )
