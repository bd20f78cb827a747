"""The repository's tile model as a python-backend model running a drq runner.

`1/model.onnx` runs on drq's `OrtRunner` (onnxruntime, CPU); `1/model.plan` (with its manifest
`model.plan.json`) on drq's `TrtRunner`, which registers drq's dual-region TensorRT plugins before
deserialising: the way to serve engines that use them, which Triton's own tensorrt_plan backend
cannot load (they are Python `tensorrt.plugin` plugins, not a plugin library).

Triton's dynamic batcher hands `execute` the queued requests together (tile batches of concurrent
image requests); tiles of the same shape are concatenated into one onnxruntime call and split back,
so one session run serves several requests. Inputs and outputs use the ONNX model's tensor names
(parameters `input` / `output`); `threads` sets onnxruntime's intra-op threads (0: its default).

The repository's `drq_sr_tile/1/model.py` is one import line, so the code lives (and is tested) here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from serve.triton.backend_params import int_parameter, model_parameters, str_parameter
from serve.triton.pb_tensors import from_numpy, silence_capsule_warning, to_numpy

MODEL_FILE = "model.onnx"
ENGINE_FILE = "model.plan"


def open_runner(version_dir: Path, threads: int) -> Any:
    """`TrtRunner` for `model.plan` when the version folder has one, else `OrtRunner` for `model.onnx`."""
    if (version_dir / ENGINE_FILE).is_file():
        from serve.runtime.trt import TrtRunner

        return TrtRunner(version_dir / ENGINE_FILE)
    from serve.runtime.ort import OrtRunner

    return OrtRunner(version_dir / MODEL_FILE, threads=threads or None)


def run_grouped(run: Any, batches: list[np.ndarray]) -> list[np.ndarray]:
    """`run` once per distinct tile shape over the concatenated batches; results split back in order."""
    results: list[np.ndarray | None] = [None] * len(batches)
    shapes: dict[tuple[int, ...], list[int]] = {}
    for index, batch in enumerate(batches):
        shapes.setdefault(tuple(batch.shape[1:]), []).append(index)
    for indices in shapes.values():
        out = run(np.concatenate([batches[i] for i in indices]))
        offsets = np.cumsum([0] + [batches[i].shape[0] for i in indices])
        for k, i in enumerate(indices):
            results[i] = out[offsets[k] : offsets[k + 1]]
    return results  # type: ignore[return-value]


class TritonPythonModel:
    """Triton's python-backend entry points (`initialize`, `execute`, `finalize`)."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        params = model_parameters(args)
        self.input = str_parameter(params, "input")
        self.output = str_parameter(params, "output")
        threads = int_parameter(params, "threads", 0)
        self.runner = open_runner(Path(args["model_repository"]) / args["model_version"], threads)
        silence_capsule_warning()

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self.pb
        batches = [to_numpy(pb.get_input_tensor_by_name(r, self.input)) for r in requests]
        try:
            outputs = run_grouped(self.runner.run, batches)
        except Exception as err:  # onnxruntime's own error types; every request gets the one line
            message = f"{self.runner.name}: {' '.join(str(err).split())[:300]}"
            return [pb.InferenceResponse(error=pb.TritonError(message)) for _ in requests]
        return [pb.InferenceResponse([from_numpy(pb, self.output, out)]) for out in outputs]

    def finalize(self) -> None:
        self.runner.close()
