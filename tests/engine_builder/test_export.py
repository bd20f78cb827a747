"""Float export: dynamic N/H/W, names, layer map, numerics against torch. Also hosts the tiny model and
recipe builders the lowering tests import (so the tests need no model zoo)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from drq.grids import split_outlier_scale
from drq.recipe import (
    CalibrationInfo,
    DualRegionAct,
    LayerRecipe,
    ModelIdentity,
    Recipe,
    UniformAct,
    WeightQuant,
    f32,
)
from engine_builder.errors import ExportError
from engine_builder.export.torch_export import export_float_onnx, unwrap_quant_layers
from engine_builder.lowerings.graph import LAYER_MAP_KEY, SCALE_KEY, metadata

ort = pytest.importorskip("onnxruntime")


class _Block(nn.Module):
    """IMDN-flavoured block: conv, LeakyReLU, channel split/concat, 1x1 fuse conv, residual Add."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.act = nn.LeakyReLU(0.05)
        self.c2 = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = torch.split(self.act(self.c1(x)), [x.shape[1] // 2, x.shape[1] - x.shape[1] // 2], dim=1)
        return self.c2(torch.cat([b, a], 1)) + x


class TinySR(nn.Module):
    """x2 SR net with a head conv, two residual blocks, a pixel-shuffle tail and a ConvTranspose."""

    def __init__(self, ch: int = 8, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.head = nn.Conv2d(3, ch, 3, padding=1)
        self.body = nn.Sequential(_Block(ch), _Block(ch))
        self.up = nn.Sequential(nn.Conv2d(ch, 3 * 4, 3, padding=1), nn.PixelShuffle(2))
        self.tail = nn.ConvTranspose2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        return self.tail(self.up(self.body(f) + f)) + nn.functional.interpolate(x, scale_factor=2.0)


LAYERS = ("head", "body.0.c1", "body.0.c2", "body.1.c1", "body.1.c2", "up.0", "tail")


def observe(
    model: nn.Module, x: torch.Tensor | list[torch.Tensor], names: tuple[str, ...] = LAYERS
) -> dict[str, tuple[float, float, np.ndarray]]:
    """(min, max, per-channel max |x|) of every named conv's input over `x` (a batch or a list)."""
    stats: dict[str, tuple[float, float, np.ndarray]] = {}
    hooks = []
    for name, module in model.named_modules():
        if name in names:

            def hook(mod, inp, name=name):
                t = inp[0].detach()
                new = (float(t.min()), float(t.max()), t.abs().amax(dim=(0, 2, 3)).numpy())
                if name in stats:
                    old = stats[name]
                    new = (min(old[0], new[0]), max(old[1], new[1]), np.maximum(old[2], new[2]))
                stats[name] = new

            hooks.append(module.register_forward_pre_hook(hook))
    with torch.no_grad():
        for batch in x if isinstance(x, list) else [x]:
            model(batch)
    for h in hooks:
        h.remove()
    return stats


def make_recipe(
    model: nn.Module,
    budget: str,
    a_bits: int = 8,
    w_bits: int = 8,
    *,
    x: torch.Tensor | list[torch.Tensor] | None = None,
    signed: bool = True,
    names: tuple[str, ...] = LAYERS,
    identity: ModelIdentity | None = None,
) -> Recipe:
    """A recipe from observed ranges (min/max; dual-region breakpoint at 40% of the largest magnitude)."""
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) if x is None else x
    stats = observe(model, x, names)
    layers = {}
    modules = dict(model.named_modules())
    for name in names:
        lo, hi, per_ch = stats[name]
        lo, hi = min(lo, -1e-3), max(hi, 1e-3)  # a dead input (all zeros) still needs a valid grid
        w = modules[name].weight.detach()
        axis = 1 if isinstance(modules[name], nn.ConvTranspose2d) else 0
        dims = tuple(d for d in range(w.ndim) if d != axis)
        qmax = 2 ** (w_bits - 1) - 1
        w_scale = tuple(f32(float(v) / qmax) for v in w.abs().amax(dim=dims).clamp_min(1e-8))
        weight = WeightQuant(bits=w_bits, scale=w_scale, axis=axis)
        if budget == "uniform":
            if signed:
                act = UniformAct(bits=a_bits, scale=f32(max(abs(lo), abs(hi)) / (2 ** (a_bits - 1) - 1)))
            else:
                scale = f32((hi - lo) / (2**a_bits - 1))
                act = UniformAct(bits=a_bits, scale=scale, zero_point=int(round(-lo / scale)), signed=False)
        else:
            mag = max(abs(lo), abs(hi))
            bp = f32(0.4 * mag)
            lower, upper = f32(min(lo, 0.0)), f32(max(hi, bp * 1.5))
            chans = tuple(int(c) for c in np.nonzero(per_ch > bp)[0])
            s_o = split_outlier_scale(lower, bp, upper, a_bits) if budget == "split" else None
            act = DualRegionAct(
                budget=budget,
                bits=a_bits,
                lower=lower,
                breakpoint=bp,
                upper=upper,
                outlier_scale=s_o,
                outlier_channels=chans,
            )
        layers[name] = LayerRecipe(op="conv_transpose2d" if axis == 1 else "conv2d", weight=weight, act=act)
    identity = identity or ModelIdentity(arch="tiny", scale=2, checkpoint_sha256="")
    return Recipe(
        model=identity,
        method="minmax" if budget == "uniform" else "drq",
        w_bits=w_bits,
        a_bits=a_bits,
        budget=budget,
        weight_mode="per-channel",
        calibration=CalibrationInfo(images=2, crop=16, seed=1),
        layers=layers,
    )


def run_ort(model: onnx.ModelProto, x: np.ndarray, threads: int = 1) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {"lr": x})[0]


@pytest.fixture(scope="module")
def tiny() -> TinySR:
    return TinySR().eval()


def test_export_maps_every_layer_and_runs_dynamic_shapes(tiny: TinySR) -> None:
    model = export_float_onnx(tiny, scale=2)
    meta = metadata(model)
    mapping = json.loads(meta[LAYER_MAP_KEY])
    assert list(mapping) == list(LAYERS)
    nodes = {n.name: n for n in model.graph.node}
    assert nodes[mapping["tail"]].op_type == "ConvTranspose"
    assert nodes[mapping["body.1.c1"]].input[1] == "body.1.c1.weight"  # weights stay named initializers
    assert meta[SCALE_KEY] == "2"
    assert [i.name for i in model.graph.input] == ["lr"] and [o.name for o in model.graph.output] == ["sr"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]
    assert any(n.op_type == "DepthToSpace" for n in model.graph.node)
    assert model.opset_import[0].version == 17
    for shape in [(1, 3, 16, 16), (2, 3, 21, 34)]:  # other batch and odd sizes than the tracing input
        x = torch.rand(shape, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            ref = tiny(x).numpy()
        out = run_ort(model, x.numpy())
        assert out.shape == ref.shape
        np.testing.assert_allclose(out, ref, atol=2e-5)


def test_export_layer_map_survives_unwrapping_quant_wrappers(tiny: TinySR) -> None:
    class Wrapper(nn.Module):  # the calib QuantLayer contract: layer + a_quant + w_quant
        def __init__(self, layer: nn.Module) -> None:
            super().__init__()
            self.layer, self.a_quant, self.w_quant = layer, None, None

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x) * 0  # would break numerics if the exporter ran it

    wrapped = TinySR().eval()
    wrapped.body[0].c1 = Wrapper(wrapped.body[0].c1)
    plain = unwrap_quant_layers(wrapped)
    assert isinstance(plain.body[0].c1, nn.Conv2d) and isinstance(wrapped.body[0].c1, Wrapper)
    mapping = json.loads(metadata(export_float_onnx(wrapped))[LAYER_MAP_KEY])
    assert "body.0.c1" in mapping


def test_export_rejects_low_opset(tiny: TinySR) -> None:
    with pytest.raises(ExportError, match="opset 11: per-axis"):
        export_float_onnx(tiny, opset=11)
