"""Which layers get b bits and which stay at 8, found from the data flow of one probe forward pass.

No per-model code: the model runs once on a small random input under a `TorchFunctionMode` that records
every torch function call (which tensors it consumed, which it produced), while module hooks record the
quantizable layers (Conv2d, ConvTranspose2d, Linear) as single nodes. From that graph:

* head: the first quantizable layer executed;
* upsampler / tail: every layer whose output reaches an upsampling op (pixel_shuffle, interpolate /
  upsample, conv_transpose) through non-layer ops only, every ConvTranspose2d that upsamples, and every
  layer that executes at a resolution above the input's (the HR tail). An "upsampling op" must produce a
  larger spatial size than the probe input, so e.g. the bilinear interpolate back to LR size inside
  RFDN's ESA blocks does not count;
* layers never executed in the probe (unused scale branches of multi-scale models) are not quantized;
* layers whose input is globally pooled (1 x 1 spatial while the image is larger: the MLP of a channel
  attention such as IMDN's CCA) are left in floating point unless `all_layers`: their compute is
  negligible, and quantizing the per-channel statistics that drive a sigmoid gate over the whole block
  cost IMDN x4 0.33 dB on Set5 at W8A8 (measured with calib_crops of bsd200, drq split; see
  results/ptq).

Wang et al. (ICCV 2025) keep the head, upsampler and tail convs at 8 bits; everything else gets b bits.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from calib.errors import CalibError
from calib.quantizers import quantizable_layers

UPSAMPLING_FUNCS = frozenset(
    {
        "pixel_shuffle",
        "interpolate",
        "upsample",
        "upsample_nearest",
        "upsample_bilinear",
        "upsample_nearest2d",
        "upsample_bilinear2d",
        "upsample_bicubic2d",
        "conv_transpose2d",
        "conv_transpose1d",
        "conv_transpose3d",
        "repeat_interleave",
    }
)


@dataclass
class _Node:
    kind: str  # a function name, or "layer"
    name: str | None  # layer name for layer nodes
    inputs: list[int]
    in_hw: tuple[int, int] | None = None
    out_hw: tuple[int, int] | None = None


@dataclass(frozen=True)
class LayerGraph:
    """What the probe saw: executed layers in order and the roles the policy assigns them."""

    executed: tuple[str, ...]
    head: str
    upsampler: frozenset[str]
    high_res: frozenset[str]
    skipped: tuple[str, ...]
    probe_hw: tuple[int, int]
    pooled: frozenset[str] = frozenset()

    @property
    def protected(self) -> frozenset[str]:
        """Layers kept at 8 bits: the head, the upsampler convs and every HR-resolution layer."""
        return frozenset({self.head}) | self.upsampler | self.high_res


def _hw(t: torch.Tensor) -> tuple[int, int] | None:
    return (int(t.shape[-2]), int(t.shape[-1])) if t.dim() == 4 else None


@dataclass
class _Recorder:
    nodes: list[_Node] = field(default_factory=list)
    producer: dict[int, int] = field(default_factory=dict)
    keep: list[torch.Tensor] = field(default_factory=list)  # keeps ids unique while probing
    depth: int = 0

    def sources(self, values: Any) -> tuple[list[int], tuple[int, int] | None]:
        flat, _ = tree_flatten(values)
        found: list[int] = []
        best: tuple[int, int] | None = None
        for v in flat:
            if isinstance(v, torch.Tensor):
                hw = _hw(v)
                if hw is not None and (best is None or hw[0] * hw[1] > best[0] * best[1]):
                    best = hw
                node = self.producer.get(id(v))
                if node is not None and node not in found:
                    found.append(node)
        return found, best

    def add(self, node: _Node, outputs: Any) -> None:
        index = len(self.nodes)
        self.nodes.append(node)
        flat, _ = tree_flatten(outputs)
        for v in flat:
            if isinstance(v, torch.Tensor):
                self.producer[id(v)] = index
                self.keep.append(v)
                if node.out_hw is None:
                    node.out_hw = _hw(v)


class _Mode(TorchFunctionMode):
    def __init__(self, rec: _Recorder) -> None:
        super().__init__()
        self.rec = rec

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 (torch signature)
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rec = self.rec
        if rec.depth == 0:
            inputs, in_hw = rec.sources((args, kwargs))
            if inputs and any(isinstance(v, torch.Tensor) for v in tree_flatten(out)[0]):
                name = getattr(func, "__name__", str(func)).lower()
                rec.add(_Node(kind=name, name=None, inputs=inputs, in_hw=in_hw), out)
        return out


def _probe_input(model: nn.Module, size: int, channels: int | None) -> torch.Tensor:
    if channels is None:
        first = next(iter(quantizable_layers(model).values()), None)
        channels = int(getattr(first, "in_channels", 3)) if first is not None else 3
    gen = torch.Generator().manual_seed(0)
    return torch.rand(1, channels, size, size, generator=gen)


def probe_layers(model: nn.Module, size: int = 32, channels: int | None = None) -> LayerGraph:
    """Run one forward pass on a random `size` x `size` input and classify the quantizable layers.

    Raises:
        CalibError: the model executed no quantizable layer.
    """
    layers = quantizable_layers(model)
    modules = {name: module for name, module in model.named_modules()}
    rec = _Recorder()
    order: list[str] = []
    handles = []

    def attach(name: str, module: nn.Module) -> None:
        def pre(_m: nn.Module, args: tuple[Any, ...]) -> None:
            inputs, in_hw = rec.sources(args)
            pending.append((inputs, in_hw))
            rec.depth += 1

        def post(_m: nn.Module, _args: tuple[Any, ...], out: Any) -> None:
            rec.depth -= 1
            inputs, in_hw = pending.pop()
            rec.add(_Node(kind="layer", name=name, inputs=inputs, in_hw=in_hw), out)
            if name not in order:
                order.append(name)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    pending: list[tuple[list[int], tuple[int, int] | None]] = []
    for name in layers:
        # Hook the QuantLayer when wrapped, so the node covers the quantizers as well.
        attach(name, modules[name])
    x = _probe_input(model, size, channels)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _Mode(rec):
            rec.producer[id(x)] = -1
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    if not order:
        raise CalibError(
            f"{type(model).__name__}: the probe forward pass executed no Conv2d, ConvTranspose2d or Linear"
        )
    return _classify(rec.nodes, order, list(layers), (size, size))


def _bigger(hw: tuple[int, int] | None, ref: tuple[int, int]) -> bool:
    return hw is not None and (hw[0] > ref[0] or hw[1] > ref[1])


def _classify(
    nodes: list[_Node], order: list[str], all_layers: list[str], probe_hw: tuple[int, int]
) -> LayerGraph:
    succ: dict[int, list[int]] = {}
    for i, node in enumerate(nodes):
        for j in node.inputs:
            if j >= 0:
                succ.setdefault(j, []).append(i)

    def upsamples(node: _Node) -> bool:
        base = node.kind.split(".")[-1]
        grows = _bigger(node.out_hw, node.in_hw or probe_hw)
        if node.kind == "layer":
            return False
        return (base in UPSAMPLING_FUNCS or grows) and _bigger(node.out_hw, probe_hw)

    upsampler: set[str] = set()
    high_res: set[str] = set()
    pooled: set[str] = set()
    for i, node in enumerate(nodes):
        if node.kind != "layer" or node.name is None:
            continue
        if node.in_hw == (1, 1) and probe_hw != (1, 1):
            pooled.add(node.name)
        if _bigger(node.in_hw, probe_hw):
            high_res.add(node.name)
            continue
        if _bigger(node.out_hw, node.in_hw or probe_hw) and _bigger(node.out_hw, probe_hw):
            upsampler.add(node.name)  # a ConvTranspose2d that upsamples
            continue
        seen = {i}
        queue = deque(succ.get(i, []))
        while queue:
            j = queue.popleft()
            if j in seen:
                continue
            seen.add(j)
            nxt = nodes[j]
            if nxt.kind == "layer":
                continue
            if upsamples(nxt):
                upsampler.add(node.name)
                break
            queue.extend(succ.get(j, []))
    skipped = tuple(name for name in all_layers if name not in order)
    return LayerGraph(
        executed=tuple(order),
        head=order[0],
        upsampler=frozenset(upsampler),
        high_res=frozenset(high_res),
        skipped=skipped,
        probe_hw=probe_hw,
        pooled=frozenset(pooled) - {order[0]},
    )


def layer_policy(
    model: nn.Module, bits: int, all_layers: bool = False, probe_size: int = 32, protected_bits: int = 8
) -> dict[str, int]:
    """Ordered `layer name -> bits` of the layers to quantize.

    The head, upsampler and tail layers get `protected_bits` (8), pooled-input layers are left out (FP),
    unless `all_layers`, which gives every executed layer `bits`.

    Raises:
        CalibError: the model executed no quantizable layer.
    """
    graph = probe_layers(model, probe_size)
    return policy_bits(graph, bits, all_layers, protected_bits)


def policy_bits(
    graph: LayerGraph, bits: int, all_layers: bool = False, protected_bits: int = 8
) -> dict[str, int]:
    """`layer_policy` for an already probed graph."""
    if all_layers:
        return {name: bits for name in graph.executed}
    return {
        name: (protected_bits if name in graph.protected else bits)
        for name in graph.executed
        if name not in graph.pooled
    }


def fp8_policy(graph: LayerGraph, all_layers: bool = False) -> dict[str, int]:
    """The layers an FP8 run quantizes (all at 8 bits): `policy_bits`'s rules, with the protected
    layers (head, upsampler, tail) left in float instead of at 8 bits, since FP8 has no wider format
    to protect them with; `all_layers` quantizes every executed layer. TensorRT has no FP8 kernel for
    a 3-channel first conv either (NVIDIA/TensorRT#3987), and ModelOpt leaves convs with <= 16
    channels out of FP8 (NVIDIA/Model-Optimizer#1083)."""
    bits = policy_bits(graph, 8, all_layers, 8)
    if all_layers:
        return bits
    return {name: b for name, b in bits.items() if name not in graph.protected}
