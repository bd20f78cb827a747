"""Client of the repository's image model over HTTP or gRPC (`tritonclient`), with bounded waits.

URLs: ``http://HOST:PORT`` (Triton's HTTP/REST port, 8000 by default), ``grpc://HOST:PORT`` (8001), or a
bare ``HOST:PORT`` for HTTP. Every call has a timeout, so a server that dies mid-request gives a
`ClientError` naming the URL, never a hang. Server answers map to one-line errors: 400-class (bad
image, over the pixel limit, wrong tensor) to `ClientError` with the server's reason, 503 / UNAVAILABLE
(queue full or queue timeout) to `ServerOverloaded`.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from drq.artifacts import atomic_write_bytes
from serve.triton.errors import ClientError, MissingDependency, ServerOverloaded
from serve.triton.repository import IMAGE_MODEL

_OVERLOADED = {"503", "StatusCode.UNAVAILABLE"}
_REFUSED = {"400", "StatusCode.INVALID_ARGUMENT"}


@dataclass(frozen=True)
class Endpoint:
    """A parsed server URL."""

    protocol: str  # "http" or "grpc"
    address: str  # host:port

    @property
    def url(self) -> str:
        return f"{self.protocol}://{self.address}"


def parse_url(url: str) -> Endpoint:
    """`http://h:p`, `grpc://h:p` or `h:p` (HTTP).

    Raises:
        ClientError: another scheme, or no port.
    """
    scheme, sep, rest = url.partition("://")
    protocol, address = (scheme.lower(), rest) if sep else ("http", url)
    address = address.rstrip("/")
    host, _, port = address.rpartition(":")
    if protocol not in ("http", "grpc") or not host or not port.isdigit():
        raise ClientError(f"{url}: expected http://HOST:PORT or grpc://HOST:PORT")
    return Endpoint(protocol, address)


def import_tritonclient(protocol: str) -> Any:
    """tritonclient.http or tritonclient.grpc.

    Raises:
        MissingDependency: tritonclient (with that extra) is not installed.
    """
    try:
        return importlib.import_module(f"tritonclient.{protocol}")
    except ImportError as err:
        raise MissingDependency(
            f"talking to a Triton server over {protocol} needs tritonclient "
            f"(pip install 'tritonclient[{protocol}]')"
        ) from err


def _reason(err: BaseException) -> str:
    message = err.message() if hasattr(err, "message") and callable(err.message) else str(err)
    return " ".join(str(message or err.__class__.__name__).split())[:400]


class ImageClient:
    """Send encoded images to the image model; get PNG bytes back. One client per thread (HTTP's is not
    thread-safe).

    Args:
        url: the server (see `parse_url`).
        timeout_s: the most one request may take, connection included.
        model: the image model's name.
    """

    def __init__(self, url: str, timeout_s: float = 120.0, model: str = IMAGE_MODEL) -> None:
        if timeout_s <= 0:
            raise ClientError(f"timeout: must be > 0 s, got {timeout_s}")
        self.endpoint = parse_url(url)
        self.timeout_s = timeout_s
        self.model = model
        self.module = import_tritonclient(self.endpoint.protocol)
        if self.endpoint.protocol == "http":
            self.client = self.module.InferenceServerClient(
                self.endpoint.address, connection_timeout=timeout_s, network_timeout=timeout_s
            )
        else:
            self.client = self.module.InferenceServerClient(self.endpoint.address)

    def _error(self, err: BaseException) -> ClientError:
        status = str(err.status()) if hasattr(err, "status") and callable(err.status) else ""
        reason = _reason(err)
        if status in _OVERLOADED:
            return ServerOverloaded(f"{self.endpoint.url}: server overloaded, request rejected ({reason})")
        if status in _REFUSED:
            return ClientError(f"{self.endpoint.url}: request refused ({reason})")
        if (
            "timed out" in reason.lower()
            or "deadline" in reason.lower()
            or "timeout" in type(err).__name__.lower()
        ):
            return ClientError(f"{self.endpoint.url}: no answer within {self.timeout_s:g} s ({reason})")
        return ClientError(f"{self.endpoint.url}: request failed ({status + ': ' if status else ''}{reason})")

    def _inputs(self, data: np.ndarray, name: str, datatype: str) -> list[Any]:
        tensor = self.module.InferInput(name, list(data.shape), datatype)
        tensor.set_data_from_numpy(data)
        return [tensor]

    def infer_raw(self, data: np.ndarray, input_name: str = "image", datatype: str = "UINT8") -> bytes:
        """`upscale` of a tensor with a chosen name and dtype (tests send wrong ones on purpose)."""
        outputs = [self.module.InferRequestedOutput("png")]
        try:
            if self.endpoint.protocol == "http":
                result = self.client.infer(
                    self.model, self._inputs(data, input_name, datatype), outputs=outputs
                )
            else:
                result = self.client.infer(
                    self.model,
                    self._inputs(data, input_name, datatype),
                    outputs=outputs,
                    client_timeout=self.timeout_s,
                )
        except Exception as err:  # tritonclient raises InferenceServerException, sockets raise OSError
            raise self._error(err) from err
        return result.as_numpy("png").tobytes()

    def upscale(self, data: bytes) -> bytes:
        """PNG bytes of the super-resolved image whose encoded bytes are `data`.

        Raises:
            ServerOverloaded: the server rejected the request as unavailable (HTTP 503).
            ClientError: refused (with the server's reason), unreachable, or no answer in time.
        """
        return self.infer_raw(np.frombuffer(data, np.uint8))

    def model_parameters(self) -> dict[str, str]:
        """The image model's config parameters (tile, overlap, scale, ...), as the server reports them."""
        try:
            if self.endpoint.protocol == "http":
                config = self.client.get_model_config(self.model)
            else:
                config = self.client.get_model_config(self.model, as_json=True, client_timeout=self.timeout_s)
                config = config.get("config", config)
        except Exception as err:  # as in infer_raw
            raise self._error(err) from err
        return {key: value.get("string_value", "") for key, value in config.get("parameters", {}).items()}

    def close(self) -> None:
        self.client.close()


def upscale_files(url: str, images: list[Path], targets: list[Path], timeout_s: float, quiet: bool) -> None:
    """`drq upscale --server`: send each image file's bytes, write the PNG answer atomically to its target.

    Raises:
        ClientError: as `ImageClient.upscale`; outputs already written stay.
    """
    client = ImageClient(url, timeout_s=timeout_s)
    started = time.perf_counter()
    try:
        for image, target in zip(images, targets, strict=True):
            t0 = time.perf_counter()
            atomic_write_bytes(target, client.upscale(image.read_bytes()))
            if not quiet:
                print(
                    f"{image} -> {target} ({time.perf_counter() - t0:.3f} s via {client.endpoint.url})",
                    flush=True,
                )
    finally:
        client.close()
    if not quiet:
        print(f"{len(images)} images in {time.perf_counter() - started:.2f} s")
