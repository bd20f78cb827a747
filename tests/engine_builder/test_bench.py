"""Benchmark table math, round-robin timing, reports, the CPU path on tiny ONNX, the GPU path on stand-ins."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from drq.cli import main as drq
from engine_builder.bench import (
    BenchError,
    BenchRow,
    LatencyStats,
    bench_engines,
    bench_onnx_cpu,
    group_kernels,
    kernel_group,
    parse_named,
    parse_size,
    time_round_robin,
    to_markdown,
    with_speedups,
    write_report,
)
from engine_builder.build import BuildConfig, build_engine
from tests.fakes import cuda as fake_cuda
from tests.fakes import tensorrt as fake_trt
from tests.fakes.tiny_onnx import float_sr, qlinear_sr


def test_latency_stats_percentiles():
    stats = LatencyStats.of([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (stats.p50_ms, stats.p90_ms, stats.mean_ms, stats.runs) == (3.0, 4.6, 3.0, 5)
    assert stats.p99_ms == pytest.approx(4.96)
    with pytest.raises(BenchError, match="need finite non-negative values"):
        LatencyStats.of([1.0, float("nan")])


def test_throughput_and_speedup_math():
    rows = [
        BenchRow("fp32", "onnxruntime-cpu", (256, 256), 4, 1, LatencyStats.of([100.0])),
        BenchRow("qdq", "onnxruntime-cpu", (256, 256), 4, 1, LatencyStats.of([40.0])),
        BenchRow("qdq", "onnxruntime-cpu", (540, 960), 4, 1, LatencyStats.of([80.0])),
    ]
    out = with_speedups(rows, "fp32")
    assert [r.speedup for r in out] == [1.0, 2.5, None]  # no fp32 row at 960x540: no ratio
    assert [r.latency_ratio for r in out] == [1.0, 0.4, None]  # the "ratio": < 1 is faster
    assert out[1].images_per_s == 25.0
    assert out[1].megapixels_per_s == pytest.approx(256 * 256 * 16 / 1e6 * 25)
    with pytest.raises(
        BenchError, match=r"--baseline 'fp16': not among the benchmarked models \(fp32, qdq\)"
    ):
        with_speedups(rows, "fp16")


def test_round_robin_interleaves_and_warms_up():
    order: list[str] = []
    ticks = iter(range(1000))
    runs = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    samples = time_round_robin(runs, repeat=3, warmup=2, clock=lambda: float(next(ticks)))
    assert order == ["a", "a", "b", "b", "a", "b", "a", "b", "a", "b"]
    assert samples == {"a": [1000.0] * 3, "b": [1000.0] * 3}


def test_parsers(tmp_path: Path):
    assert parse_size("1280x720") == (720, 1280)
    with pytest.raises(BenchError, match=r"--size '1280': expected WIDTHxHEIGHT"):
        parse_size("1280")
    (tmp_path / "a.onnx").write_bytes(b"x")
    assert parse_named([f"fp32={tmp_path / 'a.onnx'}"], "--onnx") == {"fp32": tmp_path / "a.onnx"}
    with pytest.raises(BenchError, match=r"--onnx 'fp32': expected NAME=PATH"):
        parse_named(["fp32"], "--onnx")
    with pytest.raises(BenchError, match=r"b.onnx: no such file \(--onnx qdq\)"):
        parse_named([f"qdq={tmp_path / 'b.onnx'}"], "--onnx")


@pytest.fixture
def two_models(tmp_path: Path) -> dict[str, Path]:
    a, b = tmp_path / "fp32.onnx", tmp_path / "wide.onnx"
    onnx.save(float_sr(scale=4), a)
    onnx.save(float_sr(scale=4, channels=16), b)
    return {"fp32": a, "wide": b}


def test_cpu_bench_and_report_files(two_models: dict[str, Path], tmp_path: Path):
    report = bench_onnx_cpu(
        two_models, (12, 16), threads=1, repeat=3, warmup=1, command="drq bench --onnx ..."
    )
    assert [r.name for r in report.rows] == ["fp32", "wide"]
    assert all(r.scale == 4 and r.latency.runs == 3 and r.lr_hw == (12, 16) for r in report.rows)
    assert report.rows[0].speedup == 1.0
    assert report.rows[1].speedup == pytest.approx(
        report.rows[0].latency.p50_ms / report.rows[1].latency.p50_ms
    )
    paths = write_report(report, tmp_path / "out" / "bench")
    assert [p.name for p in paths] == ["bench.json", "bench.md", "bench.png"]
    md = paths[1].read_text()
    assert md.startswith("# drq bench (cpu)\n\n```\ndrq bench --onnx ...\n```\n")
    assert "| fp32 | onnxruntime-cpu | 16x12 | x4 |" in md and "1.00x" in md
    assert "| p50 / fp32 p50 |" in md.splitlines()[8] and "onnxruntime kernels" not in md
    data = json.loads(paths[0].read_text())
    assert data["rows"][1]["images_per_s"] == pytest.approx(1000 / data["rows"][1]["latency"]["p50_ms"])
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_bench_refuses_mixed_scales(tmp_path: Path):
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(float_sr(scale=2), a)
    onnx.save(float_sr(scale=4), b)
    with pytest.raises(BenchError, match="models upscale differently"):
        bench_onnx_cpu({"fp32": a, "b": b}, (8, 8), threads=1, repeat=1, warmup=0)


@pytest.mark.shared_data
def test_cpu_bench_psnr_on_set5(two_models: dict[str, Path], set5_x4: Path):
    from drq.imaging.datasets import open_dataset
    from drq.imaging.evaluate import evaluate_dataset
    from serve.runtime.ort import OrtRunner

    report = bench_onnx_cpu(
        {"fp32": two_models["fp32"]}, (16, 16), threads=1, repeat=1, warmup=0, data=set5_x4
    )
    expected = evaluate_dataset(OrtRunner(two_models["fp32"], threads=1).run, open_dataset(set5_x4, 4), 4)
    assert report.rows[0].psnr == expected.psnr and report.rows[0].ssim == expected.ssim
    assert report.quality_dataset.endswith("x4") and "PSNR-Y" in to_markdown(report)


def test_gpu_bench_on_stand_ins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    rt = fake_cuda.install(monkeypatch)
    trt = fake_trt.install(monkeypatch, "10.13.0.35")
    trt.STATE.memory = rt.MEMORY
    engines = {}
    for name in ("fp16", "qdq"):
        path = tmp_path / f"{name}.onnx"
        onnx.save(float_sr(), path)
        engines[name] = tmp_path / f"{name}.plan"
        build_engine(
            BuildConfig(
                onnx=path,
                output=engines[name],
                min_shape=(1, 3, 8, 8),
                opt_shape=(1, 3, 16, 16),
                max_shape=(1, 3, 540, 960),
            )
        )
    trt.STATE.calls.clear()
    report = bench_engines(
        engines, [(540, 960), (720, 1280)], warmup=2, iters=4, command="drq bench --engine ..."
    )
    assert [(r.name, r.lr_hw) for r in report.rows] == [("fp16", (540, 960)), ("qdq", (540, 960))]
    assert any("skipped at 1280x720" in n and "outside the engine's profile" in n for n in report.notes)
    launches = trt.STATE.named("execute_async_v3")
    assert len(launches) == 2 * (1 + 2 + 4)  # per engine: the checked run, warm-up, timed
    assert report.rows[0].latency.runs == 4 and report.rows[0].speedup == 1.0
    assert report.environment["device"] == "NVIDIA H200" and report.rows[0].memory_mib > 1.0
    assert "memory MiB" in to_markdown(report)


def test_bench_command_cpu(two_models: dict[str, Path], tmp_path: Path, capsys):
    argv = [
        "bench",
        "--onnx",
        *(f"{k}={v}" for k, v in two_models.items()),
        "--size",
        "16x12",
        "--threads",
        "1",
        "--repeat",
        "2",
        "--warmup",
        "0",
        "-o",
        str(tmp_path / "r"),
        "--no-plot",
    ]
    assert drq(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'r.json'}" in out and "# drq bench (cpu)" in out
    assert (tmp_path / "r.md").read_text().splitlines()[3].startswith("drq bench --onnx fp32=")
    assert drq(["bench", "--onnx", f"fp32={two_models['fp32']}", "--baseline", "int8"]) == 2
    assert "--baseline 'int8': not among the models (fp32)" in capsys.readouterr().err


def test_bench_command_gpu_defaults_to_both_deployment_sizes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    rt = fake_cuda.install(monkeypatch)
    trt = fake_trt.install(monkeypatch, "10.13.0.35")
    trt.STATE.memory, trt.STATE.scale = rt.MEMORY, 4
    path = tmp_path / "m.onnx"
    onnx.save(float_sr(scale=4), path)
    engine = tmp_path / "m.plan"
    build_engine(
        BuildConfig(
            onnx=path,
            output=engine,
            min_shape=(1, 3, 8, 8),
            opt_shape=(1, 3, 540, 960),
            max_shape=(1, 3, 540, 960),
        )
    )
    assert drq(["bench", "--engine", f"fp16={engine}", "--iters", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    assert "| fp16 | tensorrt | 960x540 | x4 |" in out and "skipped at 1280x720" in out


def test_kernel_groups():
    assert kernel_group("com.microsoft:QLinearConv") == "integer conv"
    assert kernel_group("com.microsoft.nchwc:Conv") == kernel_group("Conv") == "float conv"
    assert kernel_group("com.microsoft:FusedConv") == "float conv"
    assert (
        kernel_group("DequantizeLinear") == "Q/DQ"
        and kernel_group("com.microsoft.nchwc:ReorderInput") == "layout"
    )
    assert kernel_group("Clip") == "other"


def test_kernel_profile_tells_integer_from_float_convs(tmp_path: Path, capsys):
    models = {"fp32": tmp_path / "fp32.onnx", "int8": tmp_path / "int8.onnx"}
    onnx.save(float_sr(scale=2), models["fp32"])
    onnx.save(qlinear_sr(scale=2), models["int8"])
    report = bench_onnx_cpu(models, (12, 16), threads=1, repeat=1, warmup=0, kernels=True)
    profiles = dict(report.kernels)
    fp32, int8 = group_kernels(profiles["fp32"]), group_kernels(profiles["int8"])
    # the float graph runs float convs only; the QDQ graph's two convs were fused into integer kernels
    assert fp32["float conv"][0] == 2 and fp32["integer conv"][0] == 0
    assert int8["integer conv"][0] == 2 and int8["float conv"][0] == 0 and int8["Q/DQ"][0] >= 2
    assert all(k.ms >= 0 and k.nodes >= 1 for ks in profiles.values() for k in ks)
    md = to_markdown(report)
    assert "## onnxruntime kernels that ran (`--kernels`)" in md
    assert "| int8 | com.microsoft:QLinearConv | integer conv | 2 |" in md
    assert any(n.startswith("kernels: onnxruntime's profiler") for n in report.notes)
    data = json.loads(json.dumps(report.to_dict()))
    assert {k["op"] for k in data["kernels"]["int8"]} >= {"com.microsoft:QLinearConv"}
    # the GPU path has no onnxruntime kernels to profile
    assert drq(["bench", "--engine", f"fp16={models['fp32']}", "--kernels"]) == 2
    assert (
        "--kernels / --ort-cuda / --ort-no-nhwc: onnxruntime options; use them with --onnx"
        in capsys.readouterr().err
    )


def test_ort_cuda_path(two_models: dict[str, Path], capsys):
    """The GPU path without TensorRT: onnxruntime's CUDA provider (runs where onnxruntime-gpu has a GPU)."""
    import onnxruntime as ort

    with pytest.raises(BenchError, match="--kernels: profiles onnxruntime's CPU provider; drop --ort-cuda"):
        bench_onnx_cpu(two_models, (8, 8), threads=1, kernels=True, cuda=True)
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert drq(["bench", "--onnx", f"fp32={two_models['fp32']}", "--ort-cuda"]) == 2
        assert "the CUDA execution provider is not available" in capsys.readouterr().err
        return
    report = bench_onnx_cpu(two_models, (64, 64), threads=1, repeat=3, warmup=1, cuda=True)
    assert report.kind == "ort-cuda" and report.environment["providers"].startswith("CUDAExecutionProvider")
    assert all(r.backend == "onnxruntime-cuda" and r.latency.runs == 3 for r in report.rows)


def test_no_nhwc_keeps_qlinearconv_channels_first(tmp_path: Path):
    # onnxruntime's NhwcTransformer swaps QLinearConv for its channels-last contrib kernel and adds
    # Transposes; disabling it (drq bench --ort-no-nhwc) keeps the ONNX QLinearConv and no Transpose
    path = tmp_path / "int8.onnx"
    onnx.save(qlinear_sr(scale=2), path)
    models = {"fp32": path}
    default = dict(bench_onnx_cpu(models, (12, 16), threads=1, repeat=1, warmup=0, kernels=True).kernels)
    report = bench_onnx_cpu(
        models,
        (12, 16),
        threads=1,
        repeat=1,
        warmup=0,
        kernels=True,
        disabled_optimizers=("NhwcTransformer",),
    )
    ops = {k.op: k.nodes for k in dict(report.kernels)["fp32"]}
    assert {k.op: k.nodes for k in default["fp32"]}["com.microsoft:QLinearConv"] == 2
    assert ops["QLinearConv"] == 2 and "com.microsoft:QLinearConv" not in ops and "Transpose" not in ops
    assert report.settings["disabled_optimizers"] == ["NhwcTransformer"]
    assert any("disabled in every session: NhwcTransformer" in n for n in report.notes)
