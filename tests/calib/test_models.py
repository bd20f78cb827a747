"""The model zoo with random weights: registry, shapes, [0, 1] range convention, ONNX export, loading."""

from __future__ import annotations

import dataclasses
import io
import re
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from calib.errors import ModelError
from calib.models import ARCHS, ArchSpec, LoadedModel, build_model, get_arch, load_pretrained
from calib.models.common import MeanShift
from calib.models.imdn import remap_imdn, remap_imdn_ntire
from calib.models.registry import remap_carn
from calib.models.rfdn import RFDN, RLFN
from drq.artifacts import sha256_file

NAMES = ("imdn", "imdn_ntire", "pan", "carn_m", "rfdn", "rlfn", "edsr_baseline", "edsr", "msrresnet", "rdn")
BIG = {"edsr", "rdn"}  # 43 M and 22 M parameters: seconds per forward/export on 2 cores
RANGE_255 = {"rfdn", "rlfn", "edsr_baseline", "edsr", "rdn"}


def _seeded(arch: str, scale: int) -> nn.Module:
    torch.manual_seed(0)
    return build_model(arch, scale).eval()


def _input(h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_registry_names_and_specs():
    assert tuple(ARCHS) == NAMES
    for name, spec in ARCHS.items():
        assert spec.name == name and spec is get_arch(name)
        assert spec.pretrained == bool(spec.checkpoints)
        assert {s for s, _ in spec.checkpoints} <= set(spec.scales)
        assert spec.input_range == (255.0 if name in RANGE_255 else 1.0)
    assert {n for n, s in ARCHS.items() if s.pretrained} == {
        "imdn",
        "imdn_ntire",
        "pan",
        "carn_m",
        "rfdn",
        "rlfn",
    }
    assert get_arch("carn_m").checkpoint_file(3) == "carn_m_multiscale.pth"
    assert get_arch("rfdn").checkpoint_file(2) is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_arch("imdn").scales = (4,)  # type: ignore[misc]


def test_unknown_arch_lists_the_valid_ones():
    with pytest.raises(ModelError) as err:
        get_arch("swinir")
    assert str(err.value) == (
        "unknown arch 'swinir'; choose from imdn, imdn_ntire, pan, carn_m, rfdn, rlfn, edsr_baseline, edsr, "
        "msrresnet, rdn"
    )


@pytest.mark.parametrize(
    "arch, scale, valid", [("rlfn", 2, "4"), ("imdn", 8, "2, 3, 4"), ("pan", True, "2, 3, 4")]
)
def test_unsupported_scale(arch, scale, valid):
    with pytest.raises(ModelError, match=rf"^{arch}: scale {scale!r} not supported; choose from {valid}$"):
        build_model(arch, scale)


@pytest.mark.parametrize(
    "arch, scale",
    [(n, s) for n in NAMES for s in ARCHS[n].scales if n not in BIG]
    + [pytest.param(n, s, marks=pytest.mark.slow) for n in sorted(BIG) for s in ARCHS[n].scales],
)
def test_forward_shape_and_finite(arch, scale):
    model = _seeded(arch, scale)
    with torch.no_grad():
        out = model(_input(16, 20))
    assert out.shape == (1, 3, 16 * scale, 20 * scale)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "arch",
    [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in NAMES],
)
def test_onnx_export_matches_torch(arch):
    ort = pytest.importorskip("onnxruntime")
    scale = ARCHS[arch].scales[-1]
    model = _seeded(arch, scale)
    x = _input(24, 24)
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (x,),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["lr"],
            output_names=["sr"],
            dynamic_axes={"lr": {2: "h", 3: "w"}, "sr": {2: "sh", 3: "sw"}},
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
    # The traced size and another one: the graph must not have frozen 24 x 24 into a resize or a pool.
    for sample in (x, _input(20, 28, seed=1)):
        with torch.no_grad():
            expected = model(sample).numpy()
        got = session.run(None, {"lr": sample.numpy()})[0]
        assert got.shape == expected.shape == (1, 3, sample.shape[2] * scale, sample.shape[3] * scale)
        assert np.abs(got - expected).max() < 1e-4


@pytest.mark.parametrize("cls", [RFDN, RLFN])
def test_255_models_scale_inside_forward(cls):
    """A 0-255 model given x in [0, 1] computes net(255 x) / 255 with the same weights."""
    torch.manual_seed(0)
    in_255 = cls(4).eval()
    in_1 = cls(4, input_range=1.0).eval()
    in_1.load_state_dict(in_255.state_dict())
    x = _input(16, 16)
    with torch.no_grad():
        got = in_255(x)
        raw = in_1(x * 255.0)
    torch.testing.assert_close(got * 255.0, raw, rtol=1e-5, atol=1e-3)
    assert not torch.allclose(got, in_1(x).detach(), atol=1e-3)  # the range really matters to the net


@pytest.mark.parametrize("arch", ["edsr_baseline", "carn_m"])
def test_mean_shifts_are_not_quantizable_convs(arch):
    """The mean shifts are buffers, so the first Conv2d a quantizer sees is the real head."""
    model = _seeded(arch, 2)
    shifts = [name for name, m in model.named_modules() if isinstance(m, MeanShift)]
    assert shifts == ["sub_mean", "add_mean"]
    first_conv = next(name for name, m in model.named_modules() if isinstance(m, nn.Conv2d))
    assert first_conv == {"edsr_baseline": "head.0", "carn_m": "entry"}[arch]
    mean = torch.tensor((0.4488, 0.4371, 0.4040)) * get_arch(arch).input_range
    torch.testing.assert_close(model.sub_mean.bias, -mean)
    x = _input(8, 8)
    torch.testing.assert_close(model.add_mean(model.sub_mean(x)), x)


def test_remaps_of_official_names():
    t = torch.zeros(1)
    assert list(remap_imdn({"module.IMDB1.c1.weight": t, "fea_conv.bias": t})) == [
        "IMDB1.c1.weight",
        "fea_conv.bias",
    ]
    assert list(remap_carn({"sub_mean.shifter.weight": t, "b1.b1.body.0.weight": t})) == [
        "sub_mean.weight",
        "b1.b1.body.0.weight",
    ]
    ntire = remap_imdn_ntire(
        {
            k: t
            for k in (
                "model.0.weight",
                "model.1.sub.3.conv2.0.bias",
                "model.1.sub.3.conv4.weight",
                "model.1.sub.7.conv1x1.bias",
                "model.1.sub.8.weight",
                "model.2.bias",
                "model.9.weight",
            )
        }
    )
    assert list(ntire) == [
        "head.weight",
        "blocks.3.c2.bias",
        "blocks.3.c4.weight",
        "blocks.7.c5.bias",
        "body_conv.weight",
        "upsampler.0.bias",
        "model.9.weight",
    ]


def test_carn_m_keeps_every_upsampler_and_uses_its_own():
    model = _seeded("carn_m", 3)
    assert {n for n, _ in model.upsample.named_children()} == {"up2", "up3", "up4"}
    used = []
    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=n: used.append(n))
        for n, m in model.upsample.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model(_input(8, 8))
    for hook in hooks:
        hook.remove()
    assert used == ["up3.body.0"]


@pytest.mark.parametrize("wrapper", [None, "state_dict", "params", "model"])
def test_load_pretrained_roundtrip(tmp_path, wrapper):
    source = _seeded("pan", 2)
    state = source.state_dict()
    path = tmp_path / "pan.pth"
    torch.save(state if wrapper is None else {wrapper: state, "epoch": 3}, path)
    loaded = load_pretrained("pan", 2, path)
    assert isinstance(loaded, LoadedModel) and isinstance(loaded.spec, ArchSpec)
    assert loaded.scale == 2 and loaded.spec.name == "pan"
    assert loaded.checkpoint_sha256 == sha256_file(path)
    assert not loaded.model.training
    x = _input(12, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), source(x), rtol=0, atol=0)


def test_load_pretrained_names_missing_and_unexpected_keys(tmp_path):
    state = _seeded("imdn", 4).state_dict()
    for key in ("fea_conv.weight", "fea_conv.bias", "IMDB1.c1.weight", "IMDB1.c1.bias"):
        del state[key]
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(ModelError) as err:
        load_pretrained("imdn", 4, path)
    assert str(err.value) == (
        f"{path}: not a checkpoint of imdn x4: 4 missing keys (fea_conv.weight, fea_conv.bias, "
        "IMDB1.c1.weight, ...), 1 unexpected key (extra.weight)"
    )


def test_load_pretrained_rejects_another_scale(tmp_path):
    path = tmp_path / "imdn_x2.pth"
    torch.save({"module." + k: v for k, v in _seeded("imdn", 2).state_dict().items()}, path)
    load_pretrained("imdn", 2, path)
    with pytest.raises(ModelError) as err:
        load_pretrained("imdn", 4, path)
    assert str(err.value) == (
        f"{path}: not a checkpoint of imdn x4: 2 shape mismatches (upsampler.0.weight: checkpoint "
        "(12, 64, 3, 3), model (48, 64, 3, 3), upsampler.0.bias: checkpoint (12,), model (48,))"
    )


def test_load_pretrained_file_errors(tmp_path):
    with pytest.raises(
        ModelError, match=rf"^{re.escape(str(tmp_path / 'none.pth'))}: no such checkpoint file$"
    ):
        load_pretrained("imdn", 4, tmp_path / "none.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a zip or pickle")
    with pytest.raises(ModelError) as err:
        load_pretrained("imdn", 4, junk)
    assert str(err.value) == f"{junk}: not a torch checkpoint (neither a torch.save zip archive nor a pickle)"
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match=rf"^{re.escape(str(empty))}: empty file, not a torch checkpoint$"):
        load_pretrained("imdn", 4, empty)
    pickled = tmp_path / "pickled.pth"
    torch.save({"model": _seeded("imdn", 4), "epoch": 3}, pickled)  # a whole nn.Module: code, not data
    with pytest.raises(ModelError) as err:
        load_pretrained("imdn", 4, pickled)
    assert str(err.value) == (
        f"{pickled}: not a plain torch checkpoint: it pickles Python objects that drq will not unpickle "
        "(weights_only); save the weights with torch.save(model.state_dict(), path)"
    )
    numbers = tmp_path / "numbers.pth"
    torch.save({"lr": 0.1, "weight": torch.zeros(1)}, numbers)
    with pytest.raises(
        ModelError,
        match=rf"^{re.escape(str(numbers))}: not a state_dict \(1 entries are not named "
        r"tensors, e.g. 'lr'\)$",
    ):
        load_pretrained("imdn", 4, numbers)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(ModelError, match=r": not a state_dict \(found Tensor\)$"):
        load_pretrained("imdn", 4, tensor)


def test_load_pretrained_checks_arch_and_scale_before_the_file(tmp_path):
    with pytest.raises(ModelError, match="^unknown arch 'nope'"):
        load_pretrained("nope", 4, tmp_path / "none.pth")
    with pytest.raises(ModelError, match="^rfdn: scale 8 not supported"):
        load_pretrained("rfdn", 8, tmp_path / "none.pth")
