"""Layer policy from the probe's data flow: head, upsampler, HR tail at 8 bits; unused layers skipped."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from calib.errors import CalibError
from calib.policy import layer_policy, probe_layers
from tests.calib.nets import TinyInterp, TinyShuffle, TinyTranspose


def test_pixel_shuffle_net():
    torch.manual_seed(0)
    graph = probe_layers(TinyShuffle(), 16)
    assert graph.executed == ("head", "body.0", "body.2", "fuse", "up", "tail")
    assert graph.head == "head"
    assert graph.upsampler == {"up"}
    assert graph.high_res == {"tail"}
    assert graph.skipped == ("unused",)
    policy = layer_policy(TinyShuffle(), 4, probe_size=16)
    assert list(policy.items()) == [
        ("head", 8),
        ("body.0", 4),
        ("body.2", 4),
        ("fuse", 4),
        ("up", 8),
        ("tail", 8),
    ]
    assert set(layer_policy(TinyShuffle(), 4, all_layers=True, probe_size=16).values()) == {4}


def test_interpolate_net_ignores_lr_sized_interpolate():
    graph = probe_layers(TinyInterp(), 16)
    # `trunk` reaches the x2 interpolate through an add, `att` through sigmoid * f, the head through the
    # residual; `down` only reaches the LR-sized interpolate and then `att` (a conv): not protected.
    assert graph.upsampler == {"trunk", "first", "att"}
    assert graph.high_res == {"hr"}
    assert "down" not in graph.protected


def test_conv_transpose_is_an_upsampler():
    graph = probe_layers(TinyTranspose(), 16)
    assert graph.protected == {"head", "up"}
    assert layer_policy(TinyTranspose(), 6, probe_size=16)["mid"] == 6


def test_model_without_layers_is_an_error():
    with pytest.raises(CalibError, match="executed no Conv2d"):
        probe_layers(nn.Sequential(nn.ReLU()), 8)


@pytest.mark.parametrize("arch, pooled", [("imdn", 12), ("pan", 0), ("edsr", 0)])
def test_zoo_models(arch, pooled):
    import calib.models as models

    assert arch in models.ARCHS
    torch.manual_seed(0)
    model = models.build_model(arch, 4)
    graph = probe_layers(model, 24)
    assert graph.head == graph.executed[0]
    assert not graph.skipped
    assert len(graph.pooled) == pooled
    # Besides the head, the protected layers are exactly the last ones executed: the upsampling path.
    tail = set(graph.protected - {graph.head})
    assert tail and tail == set(graph.executed[-len(tail) :])
    assert len(graph.protected) < 0.25 * len(graph.executed)


class TinyAttention(nn.Module):
    """A channel-attention MLP on globally pooled statistics (IMDN's CCA / RCAN's CA shape)."""

    def __init__(self, nf: int = 8) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, nf, 3, padding=1)
        self.du = nn.Sequential(nn.Conv2d(nf, 2, 1), nn.ReLU(), nn.Conv2d(2, nf, 1), nn.Sigmoid())
        self.body = nn.Conv2d(nf, nf, 3, padding=1)
        self.up = nn.Conv2d(nf, 12, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.head(x)
        f = self.body(f * self.du(f.mean(dim=(2, 3), keepdim=True)))
        return torch.pixel_shuffle(self.up(f), 2)


def test_pooled_attention_layers_stay_fp_unless_all_layers():
    graph = probe_layers(TinyAttention(), 16)
    assert graph.pooled == {"du.0", "du.2"}
    assert layer_policy(TinyAttention(), 4, probe_size=16) == {"head": 8, "body": 4, "up": 8}
    assert layer_policy(TinyAttention(), 4, all_layers=True, probe_size=16) == {
        "head": 4,
        "du.0": 4,
        "du.2": 4,
        "body": 4,
        "up": 4,
    }
