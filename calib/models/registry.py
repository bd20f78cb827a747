"""The architecture registry: names -> how to build a model for a scale and load its checkpoint.

`ARCHS` is an explicit dict filled here from the architecture modules (no folder scan). Every model it
builds takes RGB in [0, 1] and returns [0, 1]; `ArchSpec.input_range` records the pixel range the
weights themselves were trained on (models trained on 0-255 scale inside their own forward).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from calib.errors import ModelError
from calib.models.carn import CARNM
from calib.models.edsr import edsr_baseline, edsr_full
from calib.models.imdn import IMDN, IMDNNtire, remap_imdn, remap_imdn_ntire
from calib.models.msrresnet import MSRResNet
from calib.models.pan import PAN
from calib.models.rdn import RDN
from calib.models.rfdn import RFDN, RLFN
from drq.artifacts import sha256_file

StateDict = dict[str, torch.Tensor]

WRAPPER_KEYS = ("state_dict", "params", "model")
"""Keys under which training frameworks nest the state_dict (PyTorch Lightning / EDSR, BasicSR, KAIR)."""

_SHOWN_KEYS = 3  # keys listed per category in a mismatch message


@dataclass(frozen=True)
class ArchSpec:
    """One architecture of the zoo.

    Attributes:
        name: Registry key (`ARCHS`).
        scales: Upscaling factors the architecture can be built for.
        input_range: Pixel range the weights expect (1.0 or 255.0); the model scales internally, so
            callers always pass [0, 1].
        build: ``build(scale)`` returns a fresh model with random weights.
        remap: Renames an official checkpoint's keys to the model's (None: keys already match).
        pretrained: Whether official weights exist (the drq zoo has them in ``checkpoints``).
        description: One line: paper and configuration.
        checkpoints: ``(scale, file name)`` of the official weights in the shared weights folder.
    """

    name: str
    scales: tuple[int, ...]
    input_range: float
    build: Callable[[int], nn.Module]
    remap: Callable[[dict[str, Any]], dict[str, Any]] | None
    pretrained: bool
    description: str
    checkpoints: tuple[tuple[int, str], ...] = ()

    def checkpoint_file(self, scale: int) -> str | None:
        """The official checkpoint's file name for `scale`, or None if there is none."""
        return dict(self.checkpoints).get(scale)


@dataclass(frozen=True)
class LoadedModel:
    """A model with its checkpoint loaded strictly.

    Attributes:
        model: The network in eval mode, [0, 1] in and out.
        spec: Its architecture.
        scale: The factor it upsamples by.
        checkpoint_sha256: sha256 of the checkpoint file's bytes (recorded in recipes).
    """

    model: nn.Module
    spec: ArchSpec
    scale: int
    checkpoint_sha256: str


def remap_carn(state: dict[str, Any]) -> dict[str, Any]:
    """CARN's mean shifts are ``<name>.shifter`` convs; here they are `MeanShift` buffers."""
    return {re.sub(r"^(sub_mean|add_mean)\.shifter\.", r"\1.", key): value for key, value in state.items()}


ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec(
            "imdn",
            (2, 3, 4),
            1.0,
            IMDN,
            remap_imdn,
            True,
            "IMDN (Hui et al., ACM MM 2019): 6 IMDBs with CCA, 64 channels",
            ((2, "imdn_x2.pth"), (3, "imdn_x3.pth"), (4, "imdn_x4.pth")),
        ),
        ArchSpec(
            "imdn_ntire",
            (4,),
            1.0,
            IMDNNtire,
            remap_imdn_ntire,
            True,
            "IMDN baseline of the NTIRE 2022 efficient SR challenge: 8 blocks without CCA, 64 channels",
            ((4, "imdn_ntire_x4.pth"),),
        ),
        ArchSpec(
            "pan",
            (2, 3, 4),
            1.0,
            PAN,
            None,
            True,
            "PAN (Zhao et al., ECCV-W 2020): 16 SC-PA blocks, nf 40, unf 24",
            ((2, "pan_x2.pth"), (3, "pan_x3.pth"), (4, "pan_x4.pth")),
        ),
        ArchSpec(
            "carn_m",
            (2, 3, 4),
            1.0,
            CARNM,
            remap_carn,
            True,
            "CARN-M (Ahn et al., ECCV 2018): one multiscale network, built for one scale",
            ((2, "carn_m_multiscale.pth"), (3, "carn_m_multiscale.pth"), (4, "carn_m_multiscale.pth")),
        ),
        ArchSpec(
            "rfdn",
            (2, 3, 4),
            255.0,
            RFDN,
            None,
            True,
            "RFDN (Liu et al., ECCV-W 2020, AIM 2020 winner): 4 RFDBs, 50 channels, 0-255",
            ((4, "rfdn_x4.pth"),),
        ),
        ArchSpec(
            "rlfn",
            (4,),
            255.0,
            RLFN,
            None,
            True,
            "RLFN (Kong et al., NTIRE 2022 winner), challenge version: 4 RLFBs, 46/48 channels, 0-255",
            ((4, "rlfn_x4.pth"),),
        ),
        ArchSpec(
            "edsr_baseline",
            (2, 3, 4),
            255.0,
            edsr_baseline,
            None,
            False,
            "EDSR baseline (Lim et al., CVPR-W 2017): 16 blocks, 64 channels, res_scale 1, 0-255",
        ),
        ArchSpec(
            "edsr",
            (2, 3, 4),
            255.0,
            edsr_full,
            None,
            False,
            "EDSR (Lim et al., CVPR-W 2017): 32 blocks, 256 channels, res_scale 0.1, 0-255",
        ),
        ArchSpec(
            "msrresnet",
            (2, 3, 4),
            1.0,
            MSRResNet,
            None,
            False,
            "MSRResNet (SRResNet without BN, as in BasicSR): 16 blocks, 64 channels",
        ),
        ArchSpec(
            "rdn", (2, 3, 4), 255.0, RDN, None, False, "RDN (Zhang et al., CVPR 2018): D=16, C=8, G=64, 0-255"
        ),
    )
}


def get_arch(name: str) -> ArchSpec:
    """The registered architecture called `name`.

    Raises:
        ModelError: `name` is not registered (the message lists the valid names).
    """
    spec = ARCHS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise ModelError(f"unknown arch {name!r}; choose from {', '.join(ARCHS)}")
    return spec


def build_model(arch: str, scale: int) -> nn.Module:
    """A fresh `arch` model for `scale` with random weights (train mode, as torch builds it).

    Raises:
        ModelError: Unknown architecture, or a scale it does not support.
    """
    spec = get_arch(arch)
    if isinstance(scale, bool) or not isinstance(scale, int) or scale not in spec.scales:
        raise ModelError(
            f"{arch}: scale {scale!r} not supported; choose from {', '.join(str(s) for s in spec.scales)}"
        )
    return spec.build(scale)


def _unreadable_checkpoint(path: Path, err: Exception) -> str:
    """Say what a file torch.load(weights_only=True) refused is not (torch's own text is paragraphs)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        return "empty file, not a torch checkpoint"
    # torch.save writes a zip archive (PK..) since 1.6, a raw pickle (protocol 2+: 0x80) before.
    if head[:2] != b"PK" and head[:1] != b"\x80":
        return "not a torch checkpoint (neither a torch.save zip archive nor a pickle)"
    if "weights_only" in str(err) or "Weights only" in str(err):
        return (
            "not a plain torch checkpoint: it pickles Python objects that drq will not unpickle "
            "(weights_only); save the weights with torch.save(model.state_dict(), path)"
        )
    return f"not a readable torch checkpoint ({type(err).__name__})"


def _read_checkpoint(path: Path) -> StateDict:
    """Load a checkpoint without unpickling code and return its state_dict, unwrapped."""
    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before refusing the file
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises pickle, zip and runtime errors for non-checkpoints
        raise ModelError(f"{path}: {_unreadable_checkpoint(path, err)}") from err
    for key in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise ModelError(f"{path}: not a state_dict (found {type(obj).__name__})")
    bad = [
        key for key, value in obj.items() if not (isinstance(key, str) and isinstance(value, torch.Tensor))
    ]
    if bad:
        raise ModelError(
            f"{path}: not a state_dict ({len(bad)} entries are not named tensors, e.g. {bad[0]!r})"
        )
    return dict(obj)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN_KEYS])
    return shown + (", ..." if len(keys) > _SHOWN_KEYS else "")


def mismatch_message(expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> str | None:
    """Describe how `found` fails to load strictly into a model whose state_dict is `expected`.

    Returns:
        ``"3 missing keys (a, b, c), 1 shape mismatch (k: checkpoint (..), model (..))"`` or None if
        the keys and shapes all match.
    """
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [
        f"{k}: checkpoint {tuple(found[k].shape)}, model {tuple(expected[k].shape)}"
        for k in expected
        if k in found and found[k].shape != expected[k].shape
    ]
    parts = []
    for noun, plural, items in (
        ("missing key", "s", missing),
        ("unexpected key", "s", unexpected),
        ("shape mismatch", "es", shapes),
    ):
        if items:
            parts.append(f"{len(items)} {noun}{plural if len(items) != 1 else ''} ({_listed(items)})")
    return ", ".join(parts) or None


def load_pretrained(arch: str, scale: int, weights_path: str | os.PathLike[str]) -> LoadedModel:
    """Build `arch` for `scale` and load a checkpoint into it strictly.

    Accepts a raw state_dict or one nested under ``state_dict``, ``params`` or ``model``; the
    architecture's `remap` renames official keys first.

    Args:
        arch: Registry name (`ARCHS`).
        scale: Upscaling factor.
        weights_path: The ``.pth`` file (loaded with ``weights_only=True`` on the CPU).

    Returns:
        The model in eval mode with its spec, scale and the checkpoint file's sha256.

    Raises:
        ModelError: Unknown arch or scale, a missing or unreadable file, or a checkpoint whose keys or
            shapes do not match the model (one line naming the file, counts and the first few keys).
    """
    spec = get_arch(arch)
    model = build_model(arch, scale)
    path = Path(weights_path)
    state = _read_checkpoint(path)
    if spec.remap is not None:
        state = spec.remap(state)
    problem = mismatch_message(model.state_dict(), state)
    if problem is not None:
        raise ModelError(f"{path}: not a checkpoint of {arch} x{scale}: {problem}")
    model.load_state_dict(state, strict=True)
    model.eval()
    return LoadedModel(model=model, spec=spec, scale=scale, checkpoint_sha256=sha256_file(path))
