"""Python API: quantize any SR `nn.Module` without registering its architecture in `calib.models`.

    from calib.api import quantize_model
    from calib.calibrate import QuantizeConfig

    recipe = quantize_model(net, "photos/", QuantizeConfig(method="minmax", w_bits=8, a_bits=8,
                                                           budget="uniform"))

The recipe is the one `drq quantize` writes, with arch "custom": the model is identified by the
sha256 of its state_dict (`state_dict_sha256`) and its class name instead of a checkpoint file, so
`engine_builder.api.export_model` (which takes the module object) can refuse other weights. The
model must take and return RGB NCHW float32 images in [0, 1] and upscale by an integer factor.
"""

from __future__ import annotations

import copy
import hashlib
import os
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from calib.calibrate import QuantizeConfig, make_batches, quantize
from calib.errors import CalibError
from calib.finetune import ProgressFactory
from calib.plan import PlanConfig
from calib.quantizers import apply_recipe
from drq.errors import RecipeError
from drq.recipe import ModelIdentity, Recipe

CUSTOM_ARCH = "custom"
CalibImages = str | os.PathLike[str] | Iterable[Any]


def state_dict_sha256(model: nn.Module) -> str:
    """sha256 over the model's state_dict: every entry's key, dtype, shape and bytes, in key order.

    Equal for two modules with bitwise-equal parameters and buffers under the same names, whatever
    their device; it identifies the weights of a model that has no checkpoint file.
    """
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def module_class(model: nn.Module) -> str:
    """`package.module.ClassName` of the model (recorded in the recipe, checked on export)."""
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def infer_scale(model: nn.Module, channels: int = 3, size: int = 16) -> int:
    """The integer upscaling factor of `model`, from one forward pass on a `size` x `size` input.

    Raises:
        CalibError: the output is not `channels` x (size * S) x (size * S) for an integer S >= 1.
    """
    model = copy.deepcopy(model).eval().float().cpu()
    with torch.no_grad():
        out = model(torch.zeros(1, channels, size, size))
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape is None or len(shape) != 4 or shape[1] != channels or shape[2] % size or shape[2] != shape[3]:
        raise CalibError(
            f"{type(model).__name__}: a 1x{channels}x{size}x{size} input gave {shape}; an SR model must "
            f"return 1x{channels}x(S*{size})x(S*{size}); pass scale= explicitly if it needs other sizes"
        )
    return shape[2] // size


def _as_chw(image: Any, index: int) -> np.ndarray:
    """One LR calibration image as float32 3 x H x W in [0, 1] (from H x W x 3 uint8 or 3 x H x W float)."""
    array = np.asarray(image.detach().cpu() if isinstance(image, torch.Tensor) else image)
    if array.ndim == 3 and array.shape[-1] == 3 and array.dtype == np.uint8:
        return (array.astype(np.float32) / 255.0).transpose(2, 0, 1)
    if array.ndim == 3 and array.shape[0] == 3 and np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32)
    raise CalibError(
        f"calibration image {index}: expected H x W x 3 uint8 or 3 x H x W float in [0, 1], "
        f"got shape {array.shape} dtype {array.dtype}"
    )


def _crops_from_arrays(images: Iterable[Any], config: QuantizeConfig) -> list[np.ndarray]:
    """Up to `config.images` crops of `config.crop`, one per image, at seeded random positions."""
    rng = np.random.default_rng(config.seed)
    crops = []
    for index, image in enumerate(images):
        if len(crops) == config.images:
            break
        chw = _as_chw(image, index)
        height, width = chw.shape[1:]
        if height < config.crop or width < config.crop:
            raise CalibError(
                f"calibration image {index}: {width}x{height} is smaller than the crop {config.crop}; "
                "lower QuantizeConfig.crop"
            )
        top = int(rng.integers(0, height - config.crop + 1))
        left = int(rng.integers(0, width - config.crop + 1))
        crops.append(np.ascontiguousarray(chw[:, top : top + config.crop, left : left + config.crop]))
    if not crops:
        raise CalibError("calibration images: the iterable gave no image")
    return crops


def calibration_crops(calib_images: CalibImages, scale: int, config: QuantizeConfig) -> list[np.ndarray]:
    """LR calibration crops (float32 3 x crop x crop in [0, 1]) from a folder or from arrays.

    A folder holds HR images: `config.images` of them are drawn, downscaled by MATLAB bicubic and
    cropped exactly as `drq quantize --calib` does. Anything else is an iterable of LR images
    (H x W x 3 uint8 or 3 x H x W float32 in [0, 1]), used in order.

    Raises:
        CalibError / ImageError: a missing folder, too few images, or an image of the wrong shape.
    """
    if isinstance(calib_images, (str, os.PathLike)):
        from drq.imaging.datasets import calib_crops

        folder = Path(calib_images)
        if not folder.is_dir():
            raise CalibError(f"{folder}: no such calibration folder")
        return calib_crops(folder, scale, config.crop, config.images, config.seed)
    return _crops_from_arrays(calib_images, config)


def quantize_model(
    model: nn.Module,
    calib_images: CalibImages,
    config: QuantizeConfig | None = None,
    *,
    scale: int | None = None,
    progress: ProgressFactory | None = None,
    plan: PlanConfig | None = None,
    holdout: int = 8,
) -> Recipe:
    """Calibrate a copy of `model` (the module passed in is left as it is) and return its recipe.

    Args:
        model: any SR network, RGB NCHW float32 in [0, 1] in and out.
        calib_images: a folder of HR images, or an iterable of LR images (see `calibration_crops`).
        config: method, bits, budget and schedule (default: the paper's drq+saft W4A4 split).
        scale: upscaling factor; inferred from one forward pass when None.
        progress: optional progress-bar factory, as `calib.calibrate.quantize` takes.
        plan: make the `mixed` budget's per-layer plan (`calib.plan`, as `drq quantize --budget mixed`):
            `config` must then be a W8A8 drq method with the split budget, and `holdout` further
            calibration images, never used to fit the quantizers, check the plan's quality.

    Raises:
        CalibError: bad calibration data, an invalid config, or a model with no layer to quantize.
    """
    config = config or QuantizeConfig()
    if not isinstance(model, nn.Module):
        raise CalibError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    scale = infer_scale(model) if scale is None else scale
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise CalibError(f"scale: must be a positive integer, got {scale!r}")
    identity = ModelIdentity(
        arch=CUSTOM_ARCH,
        scale=scale,
        checkpoint_sha256="",
        state_dict_sha256=state_dict_sha256(model),
        module_class=module_class(model),
    )
    work = copy.deepcopy(model).float().cpu().eval()
    if plan is None:
        batches = make_batches(calibration_crops(calib_images, scale, config), config.batch)
        recipe, _ = quantize(work, identity, batches, config, progress)
        return replace(recipe, model=identity)
    return _quantize_mixed(work, identity, calib_images, config, plan, holdout, progress)


def _quantize_mixed(
    work: nn.Module,
    identity: ModelIdentity,
    calib_images: CalibImages,
    config: QuantizeConfig,
    plan: PlanConfig,
    holdout: int,
    progress: ProgressFactory | None,
) -> Recipe:
    """Split calibration on `config.images` crops, then the mixed plan checked on `holdout` more."""
    from calib.plan import make_plan
    from calib.quantizers import quant_layers

    if config.budget != "split" or not config.method.startswith("drq") or config.a_bits != 8:
        raise CalibError(
            f"plan: the mixed plan starts from a W8A8 drq split calibration, got {config.method} "
            f"A{config.a_bits} {config.budget}"
        )
    if holdout < 1:
        raise CalibError(f"holdout: must be >= 1, got {holdout}")
    crops = calibration_crops(calib_images, identity.scale, replace(config, images=config.images + holdout))
    if len(crops) <= config.images:
        raise CalibError(f"calib_images: {len(crops)} crops leave none held out for the plan")
    batches = make_batches(crops[: config.images], config.batch)
    recipe, _ = quantize(work, identity, batches, config, progress)
    layers = quant_layers(work)
    held = torch.stack([torch.as_tensor(c) for c in crops[config.images :]])
    result = make_plan(work, {n: layers[n] for n in recipe.layers}, recipe, batches, held, plan)
    return replace(result.recipe, model=identity)


def check_model_identity(model: nn.Module, recipe: Recipe) -> None:
    """Refuse a module that is not the one the recipe was calibrated on.

    Raises:
        RecipeError: the state_dict sha256 or the class differs from the recipe's.
    """
    expected = recipe.model.state_dict_sha256
    if expected:
        actual = state_dict_sha256(model)
        if actual != expected:
            raise RecipeError(
                f"model: state_dict sha256 differs from the recipe's ({actual[:12]}... vs "
                f"{expected[:12]}...); these are not the weights that were calibrated"
            )
    if recipe.model.module_class and recipe.model.module_class != module_class(model):
        raise RecipeError(
            f"model: class {module_class(model)} differs from the recipe's {recipe.model.module_class}"
        )


def simulate_model(model: nn.Module, recipe: Recipe) -> nn.Module:
    """A fake-quantized copy of `model` as the recipe describes it (eval mode): what every lowering
    reproduces.

    Raises:
        RecipeError: another model's recipe, or a model lacking one of the recipe's layers.
    """
    check_model_identity(model, recipe)
    simulated = copy.deepcopy(model).float().cpu()
    apply_recipe(simulated, recipe)
    return simulated.eval()
