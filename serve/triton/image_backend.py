"""The repository's image model (python backend): encoded image bytes in, PNG bytes out.

Each request's `image` (UINT8 vector: the bytes of a PNG, JPEG, WebP or any image Pillow reads) is
decoded with `drq.imaging.io.read_image` (which refuses images over the pixel limit from the header),
tiled with `serve.tiling.upscale_tiled`, each batch of tiles sent to the tile model through BLS
(business-logic scripting: `pb_utils.InferenceRequest(...).exec()`), and the stitched image returned as
PNG bytes in `png`. The tile model's dynamic batcher merges tile batches of concurrent requests.

Errors, as Triton returns them (checked against tritonserver 2.51):
- undecodable, empty or oversize images: `TritonError.INVALID_ARG` -> HTTP 400 / gRPC INVALID_ARGUMENT,
  with the one-line reason from drq (e.g. ``request image: 5000x4000 is 20000000 pixels, over ...``);
- the tile model rejecting a batch (its queue full or timed out): `UNAVAILABLE` -> HTTP 503;
- anything else from the tile model: `INTERNAL` -> HTTP 500.
Triton itself answers 400 for wrong tensor names, dtypes and shapes before the model sees the request,
and 503 when this model's own queue is full.

The repository's `drq_sr/1/model.py` is one import line, so the code lives (and is tested) here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from drq.errors import DrqError
from serve.triton.backend_params import int_parameter, model_parameters, str_parameter
from serve.triton.pb_tensors import from_numpy, silence_capsule_warning, to_numpy
from serve.triton.pipeline import TilePlan, upscale_encoded

INPUT = "image"
OUTPUT = "png"


class TileModelError(Exception):
    """The tile model answered a BLS request with an error; `code` is Triton's error code."""

    def __init__(self, code: Any, message: str) -> None:
        super().__init__(message)
        self.code = code


class TritonPythonModel:
    """Triton's python-backend entry points (`initialize`, `execute`)."""

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        from drq.imaging.io import set_pixel_limit

        self.pb = pb_utils
        params = model_parameters(args)
        self.plan = TilePlan(
            scale=int_parameter(params, "scale", 1),
            tile=int_parameter(params, "tile", 1),
            overlap=int_parameter(params, "overlap", 0),
            batch=int_parameter(params, "tile_batch", 1),
        )
        set_pixel_limit(int_parameter(params, "max_pixels", 1))
        self.tile_model = str_parameter(params, "tile_model")
        self.tile_input = str_parameter(params, "tile_input")
        self.tile_output = str_parameter(params, "tile_output")
        silence_capsule_warning()

    def _run_tiles(self, batch: np.ndarray) -> np.ndarray:
        request = self.pb.InferenceRequest(
            model_name=self.tile_model,
            requested_output_names=[self.tile_output],
            inputs=[from_numpy(self.pb, self.tile_input, batch)],
        )
        response = request.exec()
        if response.has_error():
            error = response.error()
            code = error.code() if hasattr(error, "code") else self.pb.TritonError.INTERNAL
            raise TileModelError(code, f"tile model {self.tile_model}: {error.message()}")
        return to_numpy(self.pb.get_output_tensor_by_name(response, self.tile_output))

    def _respond(self, request: Any) -> Any:
        pb = self.pb
        try:
            data = to_numpy(pb.get_input_tensor_by_name(request, INPUT)).tobytes()
            png = upscale_encoded(data, self.plan, self._run_tiles)
        except DrqError as err:
            return pb.InferenceResponse(error=pb.TritonError(str(err), pb.TritonError.INVALID_ARG))
        except TileModelError as err:
            code = err.code if err.code == pb.TritonError.UNAVAILABLE else pb.TritonError.INTERNAL
            return pb.InferenceResponse(error=pb.TritonError(str(err), code))
        return pb.InferenceResponse([from_numpy(pb, OUTPUT, np.frombuffer(png, np.uint8))])

    def execute(self, requests: list[Any]) -> list[Any]:
        return [self._respond(request) for request in requests]
