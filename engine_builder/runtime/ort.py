"""onnxruntime runner: the CPU default (and CUDA when asked and available)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from engine_builder.errors import BuildError, MissingDependency


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
    """

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None, cuda: bool = False) -> None:
        ort = import_onnxruntime()
        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_file():
            raise BuildError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        if threads is not None:
            if threads < 1:
                raise BuildError(f"threads: must be >= 1, got {threads}")
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
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
            first = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
            raise BuildError(f"{self.path}: onnxruntime cannot load the model ({first[:300]})") from err
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BuildError(f"{self.path}: expected one input, found {len(inputs)}")
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if "float16" in inputs[0].type else np.float32
        self.providers = tuple(self.session.get_providers())

    def run(self, x: np.ndarray) -> np.ndarray:
        feed = {self.input_name: np.ascontiguousarray(x, dtype=self.input_dtype)}
        out = self.session.run(None, feed)[0]
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self.session = None
