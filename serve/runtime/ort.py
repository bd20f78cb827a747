"""onnxruntime runner: the CPU default (and CUDA when asked and available)."""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serve.errors import MissingDependency, RunnerError
from serve.runtime.signature import check_image_signature

# onnxruntime's rewrite rules that drop a Relu / Clip feeding a QuantizeLinear assume integer codes with
# zero point at the bottom of the code range; before a float8e4m3fn QuantizeLinear (signed, zero point 0)
# they delete a Relu that matters (measured with onnxruntime 1.32 on an fp8 graph: 0.13 max abs error
# against the same graph with optimizations off). They are skipped for graphs of the fp8 lowering.
FP8_UNSAFE_REWRITES = ("ReluQuantRewrite", "ClipQuantRewrite")


def _lowering_of(path: Path) -> str:
    """The `drq.lowering` metadata of an ONNX file ('' when absent or unreadable)."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # an unreadable file is reported by InferenceSession below, with its own message
        return ""
    return next((p.value for p in model.metadata_props if p.key == "drq.lowering"), "")


def import_onnxruntime() -> Any:
    """Import onnxruntime on first use.

    Raises:
        MissingDependency: onnxruntime is not installed.
    """
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as err:
        raise MissingDependency("running ONNX models needs onnxruntime (pip install onnxruntime)") from err


class OrtRunner:
    """An onnxruntime InferenceSession behind the `Runner` Protocol.

    Args:
        path: ONNX file.
        threads: intra-op threads (None: onnxruntime's default, one per physical core).
        cuda: use the CUDA execution provider (falls back to an error if it is not available).
        disabled_optimizers: onnxruntime graph transformers to skip by name (`InferenceSession(...,
            disabled_optimizers=...)`), e.g. ("NhwcTransformer",) keeps QLinearConv channels-first.
        memory_pattern: onnxruntime's memory-pattern planning (`SessionOptions.enable_mem_pattern`).
            Off for tiled runs: measured on IMDN x4, it holds a second activation plan after the
            second run (RSS 175 -> 280 MB at 160x160 tiles), and the CPU arena alone stays flat.
            `FP8_UNSAFE_REWRITES` are added for graphs of the fp8 lowering.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        threads: int | None = None,
        cuda: bool = False,
        disabled_optimizers: tuple[str, ...] = (),
        memory_pattern: bool = True,
    ) -> None:
        ort = import_onnxruntime()
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_file():
            raise RunnerError(f"{self.path}: no such ONNX file")
        if _lowering_of(self.path) == "fp8":
            disabled_optimizers = tuple(dict.fromkeys((*disabled_optimizers, *FP8_UNSAFE_REWRITES)))
        options = ort.SessionOptions()
        options.enable_mem_pattern = memory_pattern
        if threads is not None:
            if threads < 1:
                raise RunnerError(f"threads: must be >= 1, got {threads}")
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if cuda:
            available = ort.get_available_providers()
            if "CUDAExecutionProvider" not in available:
                raise MissingDependency(
                    f"{self.path}: the CUDA execution provider is not available "
                    f"(have {', '.join(available)}); pip install onnxruntime-gpu"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(
                str(self.path),
                sess_options=options,
                providers=providers,
                disabled_optimizers=list(disabled_optimizers) or None,
            )
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
            raise RunnerError(f"{self.path}: onnxruntime cannot load the model ({first[:300]})") from err
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise RunnerError(f"{self.path}: expected one input, found {len(inputs)}")
        check_image_signature(str(self.path), f"input {inputs[0].name!r}", inputs[0].shape)
        outputs = self.session.get_outputs()
        check_image_signature(str(self.path), f"output {outputs[0].name!r}", outputs[0].shape)
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if "float16" in inputs[0].type else np.float32
        self.providers = tuple(self.session.get_providers())

    def run(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        out = self.session.run(None, feed)[0]
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self.session = None


@dataclass(frozen=True)
class KernelTime:
    """One op type as onnxruntime ran it: `op` is "domain:OpType" for contrib/layout domains.

    Attributes:
        op: the op type of the optimized graph's node (e.g. "com.microsoft:QLinearConv",
            "com.microsoft.nchwc:Conv", "QuantizeLinear").
        nodes: how many nodes of that type ran.
        ms: their summed kernel time in the profiled run.
    """

    op: str
    nodes: int
    ms: float


def _op_label(domain: str, op_type: str) -> str:
    return op_type if domain in ("", "ai.onnx") else f"{domain}:{op_type}"


def profile_kernels(
    path: str | os.PathLike[str],
    x: np.ndarray,
    threads: int,
    runs: int = 3,
    warmup: int = 1,
    disabled_optimizers: tuple[str, ...] = (),
) -> tuple[KernelTime, ...]:
    """Which kernels onnxruntime's CPU provider runs for `path` on input `x`, and for how long.

    The session's optimized graph (after onnxruntime's QDQ fusions, e.g. DQ -> Conv -> Q into
    QLinearConv, and the NCHWc layout transform) is saved and its node names are joined with the
    per-node "kernel_time" events of onnxruntime's profiler over `runs` runs after `warmup` untimed
    ones (`SessionOptions.enable_profiling`, `optimized_model_filepath`); `nodes` and `ms` are per run.
    `disabled_optimizers` as for `OrtRunner`.
    Sorted by time, longest first.

    Raises:
        RunnerError: onnxruntime cannot load the model, or the profile has no kernel events.
    """
    import onnx

    if runs < 1 or warmup < 0:
        raise RunnerError(f"kernel profile: need runs >= 1 and warmup >= 0, got {runs}, {warmup}")
    if _lowering_of(Path(path)) == "fp8":  # the same graph OrtRunner runs
        disabled_optimizers = tuple(dict.fromkeys((*disabled_optimizers, *FP8_UNSAFE_REWRITES)))
    ort = import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix="drq_ort_profile_") as tmp:
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        # 3 = error: saving an NCHWc-optimized graph logs a "hardware specific" warning we expect.
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path),
                sess_options=options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=list(disabled_optimizers) or None,
            )
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            raise RunnerError(
                f"{path}: onnxruntime cannot load the model ({err.__class__.__name__})"
            ) from err
        feed = {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)}
        for _ in range(warmup + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        optimized = onnx.load(str(Path(tmp) / "optimized.onnx"), load_external_data=False)
    label = {n.name: _op_label(n.domain, n.op_type) for n in optimized.graph.node}
    spans = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"][-runs:]
    if len(spans) < runs:
        raise RunnerError(f"{path}: onnxruntime's profile has {len(spans)} model_run events, expected {runs}")
    start, end = spans[0]["ts"], spans[-1]["ts"] + spans[-1]["dur"]
    nodes: dict[str, int] = {}
    micros: dict[str, float] = {}
    suffix = "_kernel_time"
    for event in events:
        name = str(event.get("name", ""))
        if event.get("cat") != "Node" or not name.endswith(suffix) or not start <= event["ts"] <= end:
            continue
        node = name[: -len(suffix)]
        op = label.get(node, str(event.get("args", {}).get("op_name", "?")))
        nodes[op] = nodes.get(op, 0) + 1
        micros[op] = micros.get(op, 0.0) + float(event["dur"])
    if not nodes:
        raise RunnerError(f"{path}: onnxruntime's profile has no kernel events")
    return tuple(
        sorted(
            (KernelTime(op, nodes[op] // runs, micros[op] / 1000.0 / runs) for op in nodes),
            key=lambda k: -k.ms,
        )
    )
