"""An INT8 calibrator that serves a recipe's scales to TensorRT 8.6-10.x and never asks for data.

TensorRT's implicit INT8 path (BuilderFlag.INT8 + `IBuilderConfig.int8_calibrator`) first calls
`read_calibration_cache()`; when it returns the cache bytes, TensorRT takes the scales from them and
never calls `get_batch` (Python API, "IInt8Calibrator": "read_calibration_cache: Load a calibration
cache ... If the cache is not present, calibration is performed"; https://docs.nvidia.com/deeplearning/
tensorrt/latest/_static/python-api/infer/Int8/pyInt8.html). `get_batch` returning None means "no more
batches", so even a TensorRT that did ask could not calibrate on made-up data.

The base classes exist only once tensorrt is imported, so the class is defined inside the factory. It
must call the base `__init__` explicitly (pybind11 trampoline classes; TensorRT's docs and Polygraphy's
calibrator do the same).

TensorRT 11 removed `IInt8*Calibrator`, `BuilderFlag.INT8` and `IBuilderConfig.int8_calibrator`
("Removed Python APIs and Replacements": "Explicit quantization with Q/DQ nodes"); there the scales
must be in the graph (`drq export --lowering qdq`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from engine_builder.backends.base import FeatureUnavailable
from engine_builder.calib_cache import Algorithm, CalibCache, format_cache, version_code

_BASES = {"entropy2": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}


def make_calibrator(trt: ModuleType, cache: CalibCache, algorithm: Algorithm | None = None) -> Any:
    """A `trt.IInt8EntropyCalibrator2` (or MinMax) instance serving `cache`.

    The cache header is rewritten to the running TensorRT version and the calibrator's algorithm: the
    cache is only valid for the calibrator kind that wrote it, and TensorRT documents calibration caches
    as not portable across releases, so a header naming another version could make it recalibrate, which
    this calibrator cannot (it has no data).

    Raises:
        FeatureUnavailable: TensorRT 11 (or TensorRT-RTX): no calibrator interfaces; use Q/DQ in the graph.
    """
    algorithm = algorithm or cache.algorithm
    base = getattr(trt, _BASES[algorithm], None)
    version = str(getattr(trt, "__version__", "unknown"))
    if base is None or not hasattr(getattr(trt, "BuilderFlag", None), "INT8"):
        raise FeatureUnavailable(
            f"INT8 calibration (--int8-calibrator) needs TensorRT <= 10.x; found {version}: "
            "TensorRT 11 and TensorRT-RTX take the scales as Q/DQ in the graph "
            "(drq export --lowering qdq)"
        )
    payload = format_cache(cache.with_header(version_code(version), algorithm)).encode("ascii")

    class RecipeCalibrator(base):  # type: ignore[misc, valid-type]
        """Serves precomputed scales; never supplies a batch."""

        def __init__(self) -> None:
            base.__init__(self)
            self.cache_bytes = payload
            self.batches_requested = 0

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            self.batches_requested += 1
            return None

        def read_calibration_cache(self) -> bytes:
            return self.cache_bytes

        def write_calibration_cache(self, cache: Any) -> None:
            return None  # the recipe is the source of truth; nothing to save

    return RecipeCalibrator()
