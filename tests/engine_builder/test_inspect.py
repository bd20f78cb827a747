"""`drq inspect`: per-node precision, MACs and bytes of lowered graphs and built engines, against FP16."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from drq.cli import main as drq
from engine_builder.build import BuildConfig, build_engine
from engine_builder.export.torch_export import export_float_onnx
from engine_builder.inspect import InspectError, format_precision, inspect_onnx, parse_size, ratios
from engine_builder.lowerings.common import LoweringOptions
from engine_builder.lowerings.registry import lower
from tests.engine_builder.test_export import TinySR, make_recipe
from tests.fakes import cuda as fake_cuda
from tests.fakes import tensorrt as fake_trt

H, W = 12, 20


@pytest.fixture(scope="module")
def net_and_graph():
    net = TinySR().eval()
    return net, export_float_onnx(net, scale=2)


def _conv_macs_by_hand(net: TinySR) -> dict[str, int]:
    """Output pixels x Cout x Cin/group x kernel area per recipe layer (ConvTranspose: input pixels)."""
    out = {}
    for name in ("head", "body.0.c1", "body.0.c2", "body.1.c1", "body.1.c2", "up.0"):
        conv = net.get_submodule(name)
        out[name] = H * W * conv.out_channels * conv.in_channels * int(np.prod(conv.kernel_size))
    tail = net.tail  # ConvTranspose on the 2x image: input elements x Cout x k
    out["tail"] = (2 * H) * (2 * W) * tail.in_channels * tail.out_channels * int(np.prod(tail.kernel_size))
    return out


def test_fp16_glue_qdq_rows(net_and_graph):
    net, graph = net_and_graph
    model = lower("qdq", graph, make_recipe(net, "uniform"), LoweringOptions(glue="fp16"))
    report = inspect_onnx(model, (H, W))
    convs = {r.layer: r for r in report.rows if r.kind == "conv"}
    assert {k: r.macs for k, r in convs.items()} == _conv_macs_by_hand(net)
    for r in convs.values():
        assert (r.input_precision, r.weight_precision, r.compute_precision, r.output_precision) == (
            "int8",
            "int8",
            "int8",
            "fp16",
        )
    head = convs["head"]  # int8 input + int8 weights + fp16 bias read; fp16 output written
    assert head.bytes_read == 3 * H * W + 8 * 3 * 9 + 2 * 8 and head.bytes_written == 2 * 8 * H * W
    glue = [r for r in report.rows if r.kind == "glue"]
    assert {r.op for r in glue} >= {"Add", "LeakyRelu", "Concat", "DepthToSpace", "Cast"}
    assert all(r.compute_precision == "fp16" for r in glue if r.op != "Cast")
    assert report.totals.conv_macs == {"int8": sum(_conv_macs_by_hand(net).values())}
    assert report.reference.macs == report.totals.macs and ratios(report)["macs"] == 1.0
    assert report.totals.qdq_nodes == 14  # one Q and one DQ per quantized conv input


def test_split_counts_its_second_conv_and_fp32_doubles_the_bytes(net_and_graph):
    net, graph = net_and_graph
    split = inspect_onnx(
        lower("drq-split", graph, make_recipe(net, "split"), LoweringOptions(glue="fp16")), (H, W)
    )
    assert ratios(split)["macs"] == 2.0  # the outlier twin of every conv
    assert sum(1 for r in split.rows if r.kind == "conv" and not r.layer) == 7
    fp32 = inspect_onnx(lower("fp32", graph, None), (H, W))
    assert set(fp32.totals.conv_macs) == {"fp32"} and ratios(fp32) == {"macs": 1.0, "bytes": 2.0}
    fp16 = inspect_onnx(lower("fp16", graph, None, LoweringOptions(io_dtype="fp16")), (H, W))
    assert ratios(fp16) == {"macs": 1.0, "bytes": 1.0} and fp16.totals.qdq_nodes == 0


def test_plugin_dequant_counts_as_int8_input(net_and_graph):
    net, graph = net_and_graph
    report = inspect_onnx(lower("drq-plugin", graph, make_recipe(net, "b-bit")), (H, W))
    convs = [r for r in report.rows if r.kind == "conv"]
    assert convs and all(r.input_precision == "int8" and r.compute_precision == "int8" for r in convs)
    assert {r.op for r in report.rows if r.kind == "qdq"} == {"DualRegionQuantize", "DualRegionDequant"}


def test_format_precision_reads_inspector_formats():
    assert format_precision("Row major linear FP16 format") == "fp16"
    assert format_precision("Thirty-two wide channel vectorized row major Int8 format.") == "int8"
    assert format_precision("Float") == "fp32" and format_precision("Half") == "fp16"
    assert format_precision("N/A due to dynamic shapes") == "?"
    assert parse_size("64x48") == (48, 64)  # WIDTHxHEIGHT, as drq bench --size
    with pytest.raises(InspectError, match="--size '64': expected WIDTHxHEIGHT"):
        parse_size("64")


def test_command_writes_json_and_md_and_refuses_bad_input(net_and_graph, tmp_path: Path, capsys):
    net, graph = net_and_graph
    path = tmp_path / "q.onnx"
    onnx.save(lower("qdq", graph, make_recipe(net, "uniform"), LoweringOptions(glue="fp16")), path)
    assert drq(["inspect", str(path), "--size", f"{W}x{H}"]) == 0
    out = capsys.readouterr().out
    assert f"at {H}x{W}:" in out and "vs FP16" in out and "(1.00x)" in out
    data = json.loads((tmp_path / "q.onnx.inspect.json").read_text())
    assert data["ratios_vs_fp16"]["macs"] == 1.0 and data["size"] == [H, W]
    assert (
        "| /head/Conv | Conv | conv | int8 | int8 | int8 | fp16 |"
        in (tmp_path / "q.onnx.inspect.md").read_text()
    )
    assert drq(["inspect", str(path), "--size", "0x4"]) == 2
    assert capsys.readouterr().err == "drq inspect: --size '0x4': expected WIDTHxHEIGHT, e.g. 1280x720\n"
    assert drq(["inspect", str(tmp_path / "none.onnx")]) == 2
    assert capsys.readouterr().err == f"drq inspect: {tmp_path / 'none.onnx'}: no such file\n"


def test_engine_inspector_layers_from_the_build(net_and_graph, tmp_path: Path, monkeypatch, capsys):
    net, graph = net_and_graph
    path = tmp_path / "q.onnx"
    onnx.save(lower("qdq", graph, make_recipe(net, "uniform"), LoweringOptions(glue="fp16")), path)
    fake_cuda.install(monkeypatch)
    fake_trt.install(monkeypatch, "11.4.0")
    shapes = {"min_shape": (1, 3, 8, 8), "opt_shape": (1, 3, H, W), "max_shape": (1, 3, 32, 32)}
    build_engine(BuildConfig(onnx=path, output=tmp_path / "q.plan", **shapes))
    assert drq(["inspect", str(tmp_path / "q.plan")]) == 0
    assert "engine inspector: " in capsys.readouterr().out
    data = json.loads((tmp_path / "q.plan.inspect.json").read_text())
    assert data["size"] == [H, W]  # the profile's opt shape
    head = next(r for r in data["engine_layers"] if r["name"] == "/head/Conv")
    assert head["inputs"] == "fp16,fp16" and head["outputs"] == "fp16"  # DQ'd input and weight, stand-in
    path.write_bytes(path.read_bytes() + b" ")  # the ONNX changed after the build
    assert drq(["inspect", str(tmp_path / "q.plan")]) == 2
    assert "changed since q.plan was built" in capsys.readouterr().err


@pytest.mark.rtx
def test_tensorrt_rtx_cpu_build_is_inspected_through_its_onnx(net_and_graph, tmp_path: Path, capsys):
    """A real TensorRT-RTX build on this CPU machine: the runtime cannot load the engine without a GPU
    (measured: cudaError 35), so no inspector JSON; inspect says so and reports the ONNX it came from."""
    net, graph = net_and_graph
    path = tmp_path / "q.onnx"
    onnx.save(lower("qdq", graph, make_recipe(net, "uniform"), LoweringOptions(glue="fp16")), path)
    shapes = ["--min", "1x3x8x8", "--opt", f"1x3x{H}x{W}", "--max", "1x3x32x32"]
    assert (
        drq(["build", str(path), "-o", str(tmp_path / "q.plan"), "--backend", "tensorrt_rtx", *shapes]) == 0
    )
    assert "engine inspector unavailable on this machine" in capsys.readouterr().out
    assert drq(["inspect", str(tmp_path / "q.plan")]) == 0
    out = capsys.readouterr().out
    assert "note: engine inspector unavailable" in out
    data = json.loads((tmp_path / "q.plan.inspect.json").read_text())
    assert data["engine_layers"] == [] and data["totals"]["conv_macs"] == {
        "int8": sum(_conv_macs_by_hand(net).values())
    }
