"""The fused numba kernels (`calib.kernels`) against the torch reference they replace.

The split quantizer's forward must be bit for bit the reference's (and so `drq.grids.split_grid`'s), its
gradients equal to float32 summation order, both independent of the thread count; L_sen's fused distance
must give the reference's loss and gradient; `DRQ_FUSED_KERNELS=0` and a missing numba select the
reference.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from calib import kernels
from calib.calibrate import QuantizeConfig, quantize
from calib.errors import CalibError
from calib.finetune import FinetuneConfig, finetune
from calib.kernels.chunks import CHUNK
from calib.quantizers import DualRegionActQuantizer, quant_layers
from calib.saft_loss import check_fp_targets, fp_is_normalised, fp_target, normalise_rows, sensitivity_loss
from drq.recipe import ModelIdentity
from tests.calib.nets import TinyShuffle, tiny_batches

F32 = np.float32


@pytest.fixture(autouse=True)
def _numba_present() -> None:
    assert kernels.enabled(), "numba must be installed (drq[calib]) for the fused kernels"


def _values(rng: np.random.Generator, size: int, bp: float) -> np.ndarray:
    """Gaussian bulk, wide tails, exact breakpoints, signed zeros, infinities and huge values."""
    special = [0.0, -0.0, bp, -bp, np.nextafter(F32(bp), F32(1)), np.inf, -np.inf, 3e38, -3e38, 1e-40]
    bulk = np.concatenate([rng.normal(0, bp, size), rng.uniform(-12 * bp, 12 * bp, size // 4)])
    return np.concatenate([bulk, special]).astype(F32)


def _split_run(x_np: np.ndarray, weight: np.ndarray, bits: int, lower: float, fixed: float | None = None):  # type: ignore[no-untyped-def]
    quant = DualRegionActQuantizer("split", bits, lower, 0.5, 4.0, outlier_scale=fixed)
    x = torch.tensor(x_np, requires_grad=True)
    out = quant(x)
    (torch.nan_to_num(out) * torch.from_numpy(weight)).sum().backward()
    grads = [0.0 if p.grad is None else p.grad.item() for p in (quant.lower, quant.breakpoint, quant.upper)]
    return out.detach().numpy(), x.grad.numpy(), grads


def _both(monkeypatch: pytest.MonkeyPatch, fn):  # type: ignore[no-untyped-def]
    """fn() with the fused kernels, then with the torch reference."""
    monkeypatch.setenv(kernels.ENV_SWITCH, "1")
    fused = fn()
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    return fused, fn()


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("lower", [-6.0, 0.0])
@pytest.mark.parametrize("fixed", [None, 0.37])
def test_split_kernels_match_the_torch_reference(
    monkeypatch: pytest.MonkeyPatch, bits: int, lower: float, fixed: float | None
) -> None:
    rng = np.random.default_rng(bits)
    x_np = _values(rng, 2 * CHUNK + 333, 0.5)  # crosses chunk boundaries, ends in a partial chunk
    x_np[rng.integers(0, x_np.size, 7)] = np.nan
    weight = rng.standard_normal(x_np.size).astype(F32)
    fused, ref = _both(monkeypatch, lambda: _split_run(x_np, weight, bits, lower, fixed))
    assert fused[0].tobytes() == ref[0].tobytes()  # bit for bit: NaN, signed zeros, saturation
    assert fused[1].tobytes() == ref[1].tobytes()  # d/dx is g or 0
    for got, want in zip(fused[2], ref[2], strict=True):
        assert np.isfinite(got) and got == pytest.approx(want, rel=2e-5, abs=1e-4)
    assert any(g != 0.0 for g in fused[2])


@pytest.mark.parametrize("layout", ["channel_slice", "transposed"])
def test_split_kernels_take_non_contiguous_input(monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    torch.manual_seed(0)
    base = torch.randn(2, 8, 160, 160)  # a channel slice holds more than one chunk per row

    def run():  # type: ignore[no-untyped-def]
        quant = DualRegionActQuantizer("split", 4, -3.0, 0.5, 4.0)
        x = base.clone().requires_grad_(True)
        # a channel slice, as a split feature map gives (rows without a copy), or a layout copied first
        view = x[:, 2:6] if layout == "channel_slice" else x.transpose(2, 3)
        out = quant(view)
        (out * out).sum().backward()
        return out.detach(), x.grad, quant.upper.grad

    fused, ref = _both(monkeypatch, run)
    assert torch.equal(fused[0], ref[0]) and torch.equal(fused[1], ref[1])
    assert float(fused[2]) == pytest.approx(float(ref[2]), rel=1e-5)


def _bbit_run(x_np: np.ndarray, weight: np.ndarray, bits: int, lower: float):  # type: ignore[no-untyped-def]
    quant = DualRegionActQuantizer("b-bit", bits, lower, 0.5, 4.0)
    x = torch.tensor(x_np, requires_grad=True)
    out = quant(x)
    (out * torch.from_numpy(weight)).sum().backward()
    grads = [0.0 if p.grad is None else p.grad.item() for p in (quant.lower, quant.breakpoint, quant.upper)]
    return out.detach().numpy(), x.grad.numpy(), grads


@pytest.mark.parametrize("bits", [3, 4, 8])
@pytest.mark.parametrize("lower", [-6.0, -0.2, 0.0])  # negative tail, none (l > -bp), bounded at 0
def test_bbit_kernels_match_the_torch_reference(
    monkeypatch: pytest.MonkeyPatch, bits: int, lower: float
) -> None:
    rng = np.random.default_rng(bits)
    x_np = _values(rng, 2 * CHUNK + 333, 0.5)
    x_np[rng.integers(0, x_np.size, 7)] = np.nan
    weight = rng.standard_normal(x_np.size).astype(F32)
    fused, ref = _both(monkeypatch, lambda: _bbit_run(x_np, weight, bits, lower))
    assert fused[0].tobytes() == ref[0].tobytes()  # bit for bit, NaN encoded as code 0
    np.testing.assert_array_equal(fused[1], ref[1])
    for got, want in zip(fused[2], ref[2], strict=True):
        assert np.isfinite(got) and got == pytest.approx(want, rel=1e-4, abs=1e-3)
    assert sum(g != 0.0 for g in fused[2]) >= 2


@pytest.mark.parametrize("run", ["split", "b-bit"])
def test_quantizer_gradients_do_not_depend_on_the_thread_count(run: str) -> None:
    rng = np.random.default_rng(3)
    x_np = _values(rng, 5 * CHUNK, 0.5)
    weight = rng.standard_normal(x_np.size).astype(F32)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            runs.append((_split_run if run == "split" else _bbit_run)(x_np, weight, 4, -6.0))
    finally:
        torch.set_num_threads(threads)
    assert runs[0][1].tobytes() == runs[1][1].tobytes() and runs[0][2] == runs[1][2]


def _distance_run(fp: torch.Tensor, q: torch.Tensor, normalised: bool):  # type: ignore[no-untyped-def]
    q = q.clone().requires_grad_(True)
    fp_side = normalise_rows(fp) if normalised else fp
    loss = sensitivity_loss({"a": fp_side}, {"a": q}, {"a": 1.0}, fp_normalised=normalised)
    loss.backward()
    return float(loss.detach()), q.grad


@pytest.mark.parametrize("noise", [0.3, 0.003])
@pytest.mark.parametrize("normalised", [False, True])
def test_fused_distance_matches_the_torch_reference(
    monkeypatch: pytest.MonkeyPatch, noise: float, normalised: bool
) -> None:
    torch.manual_seed(0)
    fp = torch.rand(2, 24, 40, 40) - 0.3  # 38400 values per row: more than one chunk
    q = fp * 1.7 + noise * torch.randn_like(fp)
    fused, ref = _both(monkeypatch, lambda: _distance_run(fp, q, normalised))
    assert fused[0] == pytest.approx(ref[0], rel=1e-5)
    scale = float(ref[1].abs().max())
    assert float((fused[1] - ref[1]).abs().max()) <= 1e-4 * scale


def test_fused_distance_takes_channel_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(2)
    fp = torch.rand(2, 12, 60, 60)
    q = fp + 0.05 * torch.randn_like(fp)

    def run():  # type: ignore[no-untyped-def]
        q_base = q.clone().requires_grad_(True)
        q_slice = q_base[:, 3:10]  # row-strided (N, C'*H*W) rows, as IMDN's split gives
        loss = sensitivity_loss({"a": fp_target(fp[:, 3:10])}, {"a": q_slice}, {"a": 1.0}, fp_is_normalised())
        loss.backward()
        return float(loss.detach()), q_base.grad

    fused, ref = _both(monkeypatch, run)
    assert fused[0] == pytest.approx(ref[0], rel=1e-5)
    assert float((fused[1] - ref[1]).abs().max()) <= 1e-4 * float(ref[1].abs().max())
    assert float(fused[1][:, :3].abs().max()) == 0.0


def test_fused_distance_does_not_depend_on_the_thread_count() -> None:
    torch.manual_seed(1)
    fp = torch.rand(2, 24, 40, 40)
    q = fp + 0.1 * torch.randn_like(fp)
    threads = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            runs.append(_distance_run(fp, q, False))
    finally:
        torch.set_num_threads(threads)
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


def test_raw_fp_target_modified_in_place_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.ENV_SWITCH, "1")
    feature = torch.rand(2, 3, 4, 4)
    rows = fp_target(feature)
    check_fp_targets({"a": rows})
    feature.add_(1.0)  # what an in-place op later in the model would do
    with pytest.raises(CalibError, match="layer a was modified in place"):
        check_fp_targets({"a": rows})


def test_switch_and_missing_numba_select_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.ENV_SWITCH, "0")
    assert not kernels.enabled()
    monkeypatch.setenv(kernels.ENV_SWITCH, "1")
    monkeypatch.setitem(sys.modules, "numba", None)  # import numba now raises ImportError
    with pytest.warns(RuntimeWarning, match="numba is not installed"):
        assert kernels._numba.__wrapped__() is None


def test_finetune_with_fused_kernels_follows_the_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    def run():  # type: ignore[no-untyped-def]
        torch.manual_seed(0)
        model = TinyShuffle()
        batches = tiny_batches(4)
        config = QuantizeConfig(
            method="drq", budget="split", probe_size=16, a_bits=4, w_bits=4, all_layers=True
        )
        quantize(model, ModelIdentity("tiny", 2, ""), batches, config)
        layers = quant_layers(model)
        stats = finetune(model, layers, batches, {n: 1.0 for n in layers}, FinetuneConfig(epochs=3))
        return [(e.l_sen, e.l_rec) for e in stats.epochs]

    fused, ref = _both(monkeypatch, run)
    for (sen_f, rec_f), (sen_r, rec_r) in zip(fused, ref, strict=True):
        assert sen_f == pytest.approx(sen_r, rel=1e-4) and rec_f == pytest.approx(rec_r, rel=1e-4)
