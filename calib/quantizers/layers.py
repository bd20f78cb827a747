"""Wrapping a model's Conv2d / ConvTranspose2d / Linear layers with fake quantizers, and recipes.

`wrap_model` puts a `QuantLayer` in each chosen layer's place in its parent, so the recipe's layer
names are the model's own qualified module names. `apply_recipe` wraps and builds the quantizers a
recipe describes; `recipe_layers` reads them back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from calib.errors import CalibError
from calib.quantizers.dual_region import DualRegionActQuantizer
from calib.quantizers.fp8 import FP8ActQuantizer, FP8WeightQuantizer
from calib.quantizers.uniform import UniformActQuantizer, WeightQuantizer
from drq.errors import RecipeError
from drq.recipe import (
    DualRegionAct,
    FP8Act,
    LayerRecipe,
    Recipe,
    UniformAct,
    WeightQuant,
    decode_weight_codes,
)

QUANTIZABLE = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
_OPS = {nn.Conv2d: "conv2d", nn.ConvTranspose2d: "conv_transpose2d", nn.Linear: "linear"}


def layer_op(module: nn.Module) -> str:
    """The recipe `op` of a quantizable module ("conv2d", "conv_transpose2d" or "linear")."""
    for cls, op in _OPS.items():
        if isinstance(module, cls):
            return op
    raise CalibError(f"{type(module).__name__}: not a quantizable layer (Conv2d, ConvTranspose2d or Linear)")


def output_channel_axis(module: nn.Module) -> int:
    """The weight axis holding output channels: 1 for ConvTranspose2d, else 0."""
    return 1 if isinstance(module, nn.ConvTranspose2d) else 0


class QuantLayer(nn.Module):
    """One Conv2d / ConvTranspose2d / Linear with fake-quantized weight and input.

    The wrapped module is `layer`; its weight and bias are frozen (requires_grad False), so only the
    quantizers' parameters train. `quant_enabled` False gives exactly the wrapped layer's FP forward.
    `input_hook`, when set, sees the raw input of every forward (observers, feature capture).
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.op = layer_op(layer)
        self.layer = layer
        for param in layer.parameters(recurse=False):
            param.requires_grad_(False)
        self.w_quant: WeightQuantizer | None = None
        self.a_quant: UniformActQuantizer | DualRegionActQuantizer | None = None
        self.quant_enabled = True
        self.input_hook: Callable[[torch.Tensor], None] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_hook is not None:
            self.input_hook(x)
        if not self.quant_enabled:
            return self.layer(x)
        layer = self.layer
        weight = layer.weight if self.w_quant is None else self.w_quant(layer.weight)
        if self.a_quant is not None:
            x = self.a_quant(x)
        if self.op == "conv2d":
            return layer._conv_forward(x, weight, layer.bias)  # honours padding_mode
        if self.op == "conv_transpose2d":
            return F.conv_transpose2d(
                x,
                weight,
                layer.bias,
                layer.stride,
                layer.padding,
                layer.output_padding,
                layer.groups,
                layer.dilation,
            )
        return F.linear(x, weight, layer.bias)

    def to_recipe(self, outlier_channels: tuple[int, ...] | None = None) -> LayerRecipe:
        """This layer's recipe entry.

        Raises:
            CalibError: a quantizer is missing.
        """
        if self.w_quant is None or self.a_quant is None:
            raise CalibError(
                f"{self.op} layer: both the weight and the input quantizer are needed for a recipe"
            )
        if isinstance(self.a_quant, DualRegionActQuantizer):
            act: UniformAct | DualRegionAct = self.a_quant.to_recipe(outlier_channels)
        else:
            act = self.a_quant.to_recipe()
        return LayerRecipe(op=self.op, weight=self.w_quant.to_recipe(), act=act)  # type: ignore[arg-type]


def _walk(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module, nn.Module | None, str]]:
    """(qualified name, module, parent, attribute name) in registration order, not entering QuantLayers."""
    for child_name, child in module.named_children():
        name = f"{prefix}.{child_name}" if prefix else child_name
        yield name, child, module, child_name
        if not isinstance(child, QuantLayer):
            yield from _walk(child, name)


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Qualified name -> Conv2d / ConvTranspose2d / Linear, in module registration order.

    An already wrapped layer appears under its original name (the QuantLayer's) as the wrapped module.
    """
    found: dict[str, nn.Module] = {}
    for name, module, _, _ in _walk(model, ""):
        if isinstance(module, QuantLayer):
            found[name] = module.layer
        elif isinstance(module, QUANTIZABLE):
            found[name] = module
    return found


def quant_layers(model: nn.Module) -> dict[str, QuantLayer]:
    """Qualified name -> QuantLayer of every wrapped layer, in registration order."""
    return {name: module for name, module, _, _ in _walk(model, "") if isinstance(module, QuantLayer)}


def _few(names: Iterable[str], limit: int = 5) -> str:
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def wrap_model(model: nn.Module, names: Iterable[str] | None = None) -> dict[str, QuantLayer]:
    """Replace the named layers (default: every quantizable layer) by QuantLayers, in place.

    Already wrapped layers are returned as they are. Quantizers start as None (FP behaviour).

    Raises:
        CalibError: a name is not a quantizable layer of the model, or nothing matched.
    """
    places = {
        name: (module, parent, attr)
        for name, module, parent, attr in _walk(model, "")
        if isinstance(module, (QuantLayer, *QUANTIZABLE))
    }
    wanted = list(places) if names is None else list(dict.fromkeys(names))
    unknown = [name for name in wanted if name not in places]
    if unknown:
        valid = _few(places) if places else "none"
        raise CalibError(
            f"{type(model).__name__}: no quantizable layer named {unknown[0]!r} (valid: {valid})"
        )
    if not wanted:
        raise CalibError(
            f"{type(model).__name__}: no layer to quantize (no Conv2d, ConvTranspose2d or Linear matched)"
        )
    wrapped: dict[str, QuantLayer] = {}
    for name in wanted:
        module, parent, attr = places[name]
        if not isinstance(module, QuantLayer):
            module = QuantLayer(module)
            setattr(parent, attr, module)
        wrapped[name] = module
    return wrapped


def capture_first_inputs(
    layers: dict[str, QuantLayer],
    store: dict[str, torch.Tensor],
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> None:
    """Record each layer's first input of the next forward pass in `store` (optionally transformed),
    through its `input_hook`; the caller clears the hooks."""
    for name, layer in layers.items():

        def hook(x: torch.Tensor, _name: str = name) -> None:
            # First call only: a layer executed twice keeps its first input (weight sharing is rare).
            if _name not in store:
                store[_name] = x if transform is None else transform(x)

        layer.input_hook = hook


def set_quant_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch every QuantLayer of `model` between fake-quantized and exact FP forward."""
    for module in model.modules():
        if isinstance(module, QuantLayer):
            module.quant_enabled = enabled


def recipe_layers(layers: dict[str, QuantLayer]) -> dict[str, LayerRecipe]:
    """Recipe entries of wrapped layers, keeping their order.

    Raises:
        CalibError: a layer lacks its weight or input quantizer.
    """
    out: dict[str, LayerRecipe] = {}
    for name, layer in layers.items():
        try:
            out[name] = layer.to_recipe()
        except CalibError as err:
            raise CalibError(f"layer {name!r}: {err}") from err
    return out


def _act_quantizer(
    act: UniformAct | DualRegionAct | FP8Act,
) -> UniformActQuantizer | DualRegionActQuantizer | FP8ActQuantizer:
    if isinstance(act, DualRegionAct):
        return DualRegionActQuantizer.from_recipe(act)
    if isinstance(act, FP8Act):
        return FP8ActQuantizer.from_recipe(act)
    return UniformActQuantizer.from_recipe(act)


def _weight_quantizer(wq: WeightQuant) -> WeightQuantizer | FP8WeightQuantizer:
    if wq.format == "e4m3fn":
        return FP8WeightQuantizer.from_recipe(wq)
    return WeightQuantizer.from_recipe(wq)


def apply_recipe(model: nn.Module, recipe: Recipe) -> dict[str, QuantLayer]:
    """Wrap the recipe's layers of `model` and give them the recipe's quantizers (quant enabled).

    Everything is checked before the model is touched.

    Raises:
        RecipeError: `layers['name']: ...` when the model lacks a layer, its op differs, or the
            weight-scale count does not match the layer's channels.
    """
    available = quantizable_layers(model)
    for name, entry in recipe.layers.items():
        where = f"layers[{name!r}]"
        module = available.get(name)
        if module is None:
            valid = _few(available) or "none"
            raise RecipeError(f"{where}: the model has no quantizable layer of that name (valid: {valid})")
        op = layer_op(module)
        if op != entry.op:
            raise RecipeError(f"{where}.op: recipe says {entry.op!r} but the model's layer is {op!r}")
        weight = module.weight
        wq = entry.weight
        if wq.axis is not None:
            channels = weight.shape[wq.axis] if weight.dim() > wq.axis else 0
            if len(wq.scale) != channels:
                raise RecipeError(
                    f"{where}.weight.scale: {len(wq.scale)} scales for {channels} channels on axis {wq.axis}"
                )
        if wq.codes and decode_weight_codes(wq).size != weight.numel():
            raise RecipeError(
                f"{where}.weight.codes: {decode_weight_codes(wq).size} codes for a weight of "
                f"shape {tuple(weight.shape)}"
            )
    wrapped = wrap_model(model, list(recipe.layers))
    for name, entry in recipe.layers.items():
        layer = wrapped[name]
        device = layer.layer.weight.device
        layer.w_quant = _weight_quantizer(entry.weight).to(device)
        layer.a_quant = _act_quantizer(entry.act).to(device)
        # a mixed plan's fp16 layers run in float (torch FP32 stands in for FP16 here)
        layer.quant_enabled = recipe.plan.get(name) != "fp16"
    return wrapped
