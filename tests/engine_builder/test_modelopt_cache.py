"""drq's calibration cache through NVIDIA ModelOpt's ONNX INT8 quantizer (`calibration_cache_path`).

The whole chain: torch model -> `export_float_onnx` -> recipe -> `cache_from_recipe`/`write_cache` ->
`modelopt.onnx.quantization.quantize(..., calibration_cache_path=...)` -> the QuantizeLinear scales of
the quantized ONNX. Runs only where `modelopt.onnx.quantization` imports. Its `[onnx]` extra is not
needed and not wanted: on x86-64 Linux it pulls onnxruntime-gpu (which overwrites onnxruntime) and
cupy-cuda12x and pins onnx~=1.21. `pip install nvidia-modelopt onnx-graphsurgeon onnxslim lief` next to
drq's own onnx/onnxruntime/torch is enough (nvidia-modelopt 0.47.0, onnx 1.23.2, onnxruntime 1.32.0
CPU, calibration on the CPU provider).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from drq.recipe import Recipe
from engine_builder.calib_cache import (
    cache_from_recipe,
    input_tensor_map,
    modelopt_misread_tensors,
    write_cache,
)
from engine_builder.lowerings.graph import layer_map
from tests.fakes.tiny_onnx import float_sr

torch = pytest.importorskip("torch")


def _modelopt_installed() -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version("nvidia-modelopt")
    except PackageNotFoundError:
        return False
    return True


if _modelopt_installed():
    # Installed (the [dev] extra) but not importable means a dependency is missing: fail, don't skip.
    import modelopt.onnx.quantization as modelopt_quantization
else:
    pytest.skip("needs NVIDIA ModelOpt: pip install 'drq[modelopt]'", allow_module_level=True)

from engine_builder.export.torch_export import export_float_onnx  # noqa: E402  (needs torch)
from tests.engine_builder.test_export import TinySR, make_recipe  # noqa: E402

# 16 channels: ModelOpt skips convs with fewer than 16 input or output channels (unless its INT8
# exceptions apply), and the test wants every conv quantized.
CHANNELS = 16
# Our caches hold conv inputs only; by default ModelOpt also quantizes residual Adds reading a cached
# tensor and then fails on their uncached co-input (see engine_builder/calib_cache.py).
CONV_OPS = ["Conv", "ConvTranspose"]


def modelopt_int8(
    float_path: Path, out_path: Path, cache_path: Path | None, dtype: str = "fp32"
) -> onnx.ModelProto:
    """ModelOpt INT8 PTQ of `float_path` on the CPU; scales from `cache_path` when given."""
    modelopt_quantization.quantize(
        str(float_path),
        quantize_mode="int8",
        calibration_cache_path=None if cache_path is None else str(cache_path),
        # ModelOpt calibrates even with a cache (and overwrites the cached tensors' scales after).
        calibration_data=np.random.default_rng(0).random((2, 3, 16, 16), dtype=np.float32),
        calibration_eps=["cpu"],
        op_types_to_quantize=list(CONV_OPS),
        high_precision_dtype=dtype,
        output_path=str(out_path),
        log_level="ERROR",
    )
    return onnx.load(str(out_path))


def input_qdq(model: onnx.ModelProto, node_name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(QuantizeLinear scale, DequantizeLinear scale, zero point) on the data input of node `node_name`.

    Raises AssertionError when that input is not fed by a QuantizeLinear -> DequantizeLinear pair.
    """
    nodes = {node.name: node for node in model.graph.node}
    producers = {out: node for node in model.graph.node for out in node.output}
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    assert node_name in nodes, f"{node_name} is not in the quantized graph"
    dq = producers.get(nodes[node_name].input[0])
    assert dq is not None and dq.op_type == "DequantizeLinear", f"{node_name}: input is not dequantized"
    q = producers.get(dq.input[0])
    assert q is not None and q.op_type == "QuantizeLinear", f"{node_name}: DequantizeLinear without Q"
    return values[q.input[1]], values[dq.input[1]], values[q.input[2]]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Recipe, dict[str, str]]:
    """(float ONNX, our cache, recipe, {layer: conv node}) for a 16-channel TinySR."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("modelopt")
    model = TinySR(ch=CHANNELS).eval()
    graph = export_float_onnx(model, scale=2)
    float_path = folder / "float.onnx"
    onnx.save(graph, str(float_path))
    recipe = make_recipe(model, "uniform")
    cache_path = write_cache(cache_from_recipe(recipe, input_tensor_map(graph)), folder / "cache.txt")
    return float_path, cache_path, recipe, layer_map(graph)


@pytest.mark.parametrize(
    ("dtype", "rounded"),
    [("fp32", np.float32), ("fp16", np.float16)],  # the default "fp16" casts the scales to float16
)
def test_modelopt_puts_recipe_scales_on_every_conv_input(
    chain: tuple[Path, Path, Recipe, dict[str, str]], tmp_path: Path, dtype: str, rounded: type
) -> None:
    float_path, cache_path, recipe, convs = chain
    quantized = modelopt_int8(float_path, tmp_path / "q.onnx", cache_path, dtype)
    assert set(convs) == set(recipe.layers) and len(convs) == 7
    for layer, node in convs.items():
        q_scale, dq_scale, zero_point = input_qdq(quantized, node)
        expected = rounded(np.float32(recipe.layers[layer].act.scale))
        assert q_scale.shape == () and q_scale.dtype == expected.dtype, layer
        assert q_scale == expected and dq_scale == expected, (layer, q_scale, expected)
        assert zero_point.dtype == np.int8 and zero_point == 0, layer


def test_without_the_cache_modelopt_calibrates_other_scales(
    chain: tuple[Path, Path, Recipe, dict[str, str]], tmp_path: Path
) -> None:
    """The control: the scales above come from the cache, not from ModelOpt's own calibration."""
    float_path, _, recipe, convs = chain
    quantized = modelopt_int8(float_path, tmp_path / "q.onnx", None)
    for layer, node in convs.items():
        q_scale, _, _ = input_qdq(quantized, node)
        assert q_scale != np.float32(recipe.layers[layer].act.scale), layer


def test_modelopt_misreads_tensor_names_containing_scale(
    chain: tuple[Path, Path, Recipe, dict[str, str]], tmp_path: Path
) -> None:
    """`modelopt_misread_tensors` names exactly the tensors ModelOpt then leaves unquantized."""
    float_path, _, recipe, convs = chain
    model = onnx.load(str(float_path))
    old, new = input_tensor_map(model)["body.0.c2"], "/body/body.0/cat_scale_out"
    for node in model.graph.node:
        node.input[:] = [new if name == old else name for name in node.input]
        node.output[:] = [new if name == old else name for name in node.output]
    for info in model.graph.value_info:
        if info.name == old:
            info.name = new
    renamed = tmp_path / "renamed.onnx"
    onnx.save(model, str(renamed))
    cache = cache_from_recipe(recipe, input_tensor_map(model))
    assert modelopt_misread_tensors(cache) == (new,)
    quantized = modelopt_int8(renamed, tmp_path / "q.onnx", write_cache(cache, tmp_path / "c.txt"))
    with pytest.raises(AssertionError, match="input is not dequantized"):
        input_qdq(quantized, convs["body.0.c2"])
    q_scale, _, _ = input_qdq(quantized, convs["body.0.c1"])
    assert q_scale == np.float32(recipe.layers["body.0.c1"].act.scale)


def test_modelopt_skips_small_channel_convs_despite_the_cache(tmp_path: Path) -> None:
    """float_sr's tail conv (8 -> 12 channels, not on the graph input) is excluded by ModelOpt's
    channel rule although the cache has its input `r`; the head conv (on the graph input) is kept."""
    from tests.engine_builder.test_calib_cache import make_recipe as scales_recipe

    graph = float_sr(scale=2, channels=8)
    float_path = tmp_path / "float.onnx"
    onnx.save(graph, str(float_path))
    recipe = scales_recipe({"head": 0.0123, "tail": 0.25})
    cache = write_cache(cache_from_recipe(recipe, input_tensor_map(graph)), tmp_path / "c.txt")
    quantized = modelopt_int8(float_path, tmp_path / "q.onnx", cache)
    q_scale, _, _ = input_qdq(quantized, "/head/Conv")
    assert q_scale == np.float32(0.0123)
    with pytest.raises(AssertionError, match="input is not dequantized"):
        input_qdq(quantized, "/tail/Conv")


def test_modelopt_takes_the_full_cache_with_the_recipe_scales_on_conv_inputs(
    chain: tuple[Path, Path, Recipe, dict[str, str]], tmp_path: Path
) -> None:
    """The full cache (`drq calib-cache --calib`: also conv outputs, Adds, Concats, activations) is still
    read by ModelOpt: the conv inputs keep the recipe's scales, and the extra entries break nothing."""
    from engine_builder.calib_cache import complete_cache, int8_tensors, observe_int8_scales

    float_path, _, recipe, convs = chain
    graph = onnx.load(str(float_path))
    partial = cache_from_recipe(recipe, input_tensor_map(graph))
    crops = [np.random.default_rng(i).random((1, 3, 16, 16), dtype=np.float32) for i in range(2)]
    full = complete_cache(partial, observe_int8_scales(graph, crops), graph)
    assert len(full.scales) == len(int8_tensors(graph)) > len(partial.scales)
    quantized = modelopt_int8(float_path, tmp_path / "q.onnx", write_cache(full, tmp_path / "full.txt"))
    for layer, node in convs.items():
        q_scale, dq_scale, _ = input_qdq(quantized, node)
        expected = np.float32(recipe.layers[layer].act.scale)
        assert q_scale == expected and dq_scale == expected, (layer, q_scale, expected)
