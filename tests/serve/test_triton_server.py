"""A real Triton Inference Server (nvidia-pytriton's tritonserver) on a repository from `drq triton-repo`.

The server is started and stopped by fixtures on loopback ports. The model is a tiny x4 conv net
(tests/fakes/tiny_onnx.py) so the whole file stays well under two minutes on two shared cores.
Torch-free: it runs in the torch-free CI lane as well.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from serve.triton.client import ImageClient
from serve.triton.errors import ClientError, ServerError, ServerOverloaded
from serve.triton.load import open_loop, process_tree_rss_mib, sequential_rate
from serve.triton.server import ServerOptions, TritonServer, find_tritonserver
from serve.triton_repo_command import main as triton_repo
from serve.upscale_command import main as upscale
from tests.fakes.tiny_onnx import float_sr

pytestmark = [pytest.mark.torch_free]
pytest.importorskip("tritonclient.grpc", reason="needs tritonclient (pip install 'tritonclient[http,grpc]')")


def _server_installed() -> bool:
    try:
        find_tritonserver()
    except ServerError:
        return False
    return True


if not _server_installed():  # found without importing pytriton: `--no-deps` leaves its imports unmet
    pytest.skip("needs tritonserver (pip install --no-deps nvidia-pytriton)", allow_module_level=True)

TILE, OVERLAP, BATCH = 48, 4, 2
MAX_PIXELS = 200_000
RSS_BOUND_MIB = 1536  # server + 3 python-backend stubs (2 image instances, 1 tile instance)


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _png(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny_x4.onnx"
    onnx.save(float_sr(scale=4), str(path))
    return path


@pytest.fixture(scope="module")
def repo(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    argv = ["--onnx", str(model), "-o", str(out), "--tile", str(TILE), "--overlap", str(OVERLAP)]
    argv += ["--batch", str(BATCH), "--max-pixels", str(MAX_PIXELS), "--threads", "1"]
    argv += ["--queue-size", "2", "--queue-timeout-ms", "2000", "--instances", "2"]
    assert triton_repo(argv) == 0
    return out


def _start(repo: Path, log_path: Path) -> TritonServer:
    http, grpc, metrics = _free_ports(3)
    options = ServerOptions(repo, http_port=http, grpc_port=grpc, metrics_port=metrics, ready_timeout_s=90)
    log = open(log_path, "wb")  # noqa: SIM115 - closed by the fixture after the server stopped
    server = TritonServer(options, log=log, env=dict(os.environ))
    server.log_file = log  # type: ignore[attr-defined]
    return server.start()


@pytest.fixture(scope="module")
def server(repo: Path, tmp_path_factory: pytest.TempPathFactory):
    running = _start(repo, tmp_path_factory.mktemp("log") / "tritonserver.log")
    yield running
    running.stop()
    running.log_file.close()


@pytest.fixture(scope="module")
def inputs(set5_x4: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The Set5 LR images (all but one larger than the tile) and a 150x100 image, as files."""
    images = sorted((set5_x4 / "LR").glob("*.png"))
    large = tmp_path_factory.mktemp("large") / "large_150x100.png"
    large.write_bytes(_png(150, 100, 7))
    return [*images, large]


def test_http_and_grpc_outputs_equal_the_local_runtime_byte_for_byte(
    server: TritonServer, model: Path, inputs: list[Path], tmp_path: Path
) -> None:
    local = tmp_path / "local"
    tiling = ["--tile", str(TILE), "--overlap", str(OVERLAP), "--batch", str(BATCH)]
    assert upscale(["--onnx", str(model), *map(str, inputs), "-o", str(local), "--quiet", *tiling]) == 0
    for url in (server.http_url, server.grpc_url):
        remote = tmp_path / url.partition(":")[0]
        assert upscale(["--server", url, *map(str, inputs), "-o", str(remote), "--quiet"]) == 0
        for image in inputs:
            expected = (local / f"{image.stem}.png").read_bytes()
            assert (remote / f"{image.stem}.png").read_bytes() == expected, (url, image.name)
    with Image.open(local / "large_150x100.png") as sr:
        assert sr.size == (600, 400)


def _refusal(client: ImageClient, data: np.ndarray, name: str = "image", datatype: str = "UINT8") -> str:
    with pytest.raises(ClientError) as caught:
        client.infer_raw(data, name, datatype)
    assert not isinstance(caught.value, ServerOverloaded)
    return str(caught.value)


def test_bad_requests_get_a_clear_400_and_the_server_keeps_serving(server: TritonServer) -> None:
    good = _png(20, 12, 1)
    as_bytes = {
        "corrupt": good[:30] + bytes(len(good) - 30),
        "truncated": good[: len(good) // 2],
        "text": b"this is not an image",
        "empty": b"",
        "oversize": _png(500, 401, 2),  # 200,500 pixels > 200,000
    }
    reasons = {
        "corrupt": "request image: cannot read image (",
        "truncated": "request image: cannot read image (",
        "text": "request image: cannot read image (cannot identify image file",
        "empty": "request image: empty (0 bytes)",
        "oversize": "request image: 500x401 is 200500 pixels, over the pixel limit of 200000",
    }
    for url in (server.http_url, server.grpc_url):
        client = ImageClient(url, timeout_s=30)
        for what, data in as_bytes.items():
            with pytest.raises(ClientError) as caught:
                client.upscale(data)
            message = str(caught.value)
            assert f"{url}: request refused ({reasons[what]}" in message, (what, message)
            assert "\n" not in message
            assert str(caught.value.__cause__.status()) in ("400", "StatusCode.INVALID_ARGUMENT"), what
        raw = np.frombuffer(good, np.uint8)
        assert "unexpected inference input 'pixels'" in _refusal(client, raw, name="pixels")
        assert "data-type is 'FP32', but model 'drq_sr' expects 'UINT8'" in _refusal(
            client, raw.astype(np.float32), datatype="FP32"
        )
        assert "unexpected shape for input 'image'" in _refusal(client, raw.reshape(1, -1))
        with Image.open(io.BytesIO(client.upscale(good))) as sr:
            assert sr.size == (80, 48)
        client.close()
    assert server.alive()


def test_health_and_metrics_endpoints(server: TritonServer) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/drq_sr/ready"):
        with urllib.request.urlopen(server.http_url + path, timeout=5) as response:
            assert response.status == 200, path
    ImageClient(server.http_url, timeout_s=30).upscale(_png(8, 8, 3))
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    success = [
        line for line in text.splitlines() if line.startswith('nv_inference_request_success{model="drq_sr"')
    ]
    assert success and float(success[0].split()[-1]) >= 1
    assert 'nv_inference_request_success{model="drq_sr_tile"' in text  # the BLS calls are counted too


def _metric(server: TritonServer, name: str, model: str) -> float:
    with urllib.request.urlopen(server.metrics_url, timeout=5) as response:
        text = response.read().decode()
    prefix = f'{name}{{model="{model}",'
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def test_overload_at_twice_capacity_gets_only_successes_and_503s(server: TritonServer) -> None:
    payload = _png(96, 96, 4)  # 4 tiles of 48x48 -> 2 BLS batches per request
    capacity = sequential_rate(server.grpc_url, payload, requests=12)
    samples: list[float] = []
    stop = threading.Event()

    def sample_rss() -> None:  # the server's and its stubs' RSS, every 0.2 s during the load
        while not stop.wait(0.2):
            samples.append(process_tree_rss_mib(server.process.pid))

    sampler = threading.Thread(target=sample_rss)
    sampler.start()
    try:
        outcomes = open_loop(
            server.grpc_url, payload, rate=2 * capacity, count=120, max_seconds=30, timeout_s=30
        )
    finally:
        stop.set()
        sampler.join()
    assert server.alive()
    assert set(outcomes) <= {"ok", "unavailable"}, outcomes
    assert outcomes.count("ok") > 0 and outcomes.count("unavailable") > 0, (capacity, outcomes.count("ok"))
    assert samples and max(samples) < RSS_BOUND_MIB, samples
    with Image.open(io.BytesIO(ImageClient(server.http_url, timeout_s=30).upscale(payload))) as sr:
        assert sr.size == (384, 384)
    # Tile batches of concurrent requests were merged: fewer tile-model executions than BLS requests.
    requests = _metric(server, "nv_inference_request_success", "drq_sr_tile")
    executions = _metric(server, "nv_inference_exec_count", "drq_sr_tile")
    assert 0 < executions < requests, (executions, requests)


def test_a_slow_answer_or_a_server_killed_mid_request_gives_a_clear_error_not_a_hang(
    repo: Path, tmp_path: Path
) -> None:
    running = _start(repo, tmp_path / "killed.log")
    try:
        payload = _png(440, 440, 5)  # 100 tiles: several seconds on two cores
        for url in (running.grpc_url, running.http_url):
            ImageClient(url, timeout_s=30).upscale(_png(8, 8, 6))  # connected and served
            with pytest.raises(ClientError, match=rf"^{url}: no answer within 0.3 s \("):
                ImageClient(url, timeout_s=0.3).upscale(payload)  # slower than that: the client gives up
        errors: dict[str, BaseException] = {}

        def call(url: str) -> None:
            try:
                ImageClient(url, timeout_s=20).upscale(payload)
            except ClientError as err:
                errors[url] = err

        threads = [threading.Thread(target=call, args=(u,)) for u in (running.grpc_url, running.http_url)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        started = time.monotonic()
        running.kill()
        for t in threads:
            t.join(timeout=25)
        assert not any(t.is_alive() for t in threads), "a client hung after the server died"
        assert time.monotonic() - started < 25
        assert set(errors) == {running.grpc_url, running.http_url}, errors
        for url, err in errors.items():
            assert str(err).startswith(f"{url}: "), err
            assert "\n" not in str(err)
        with pytest.raises(ClientError, match="request failed"):
            ImageClient(running.http_url, timeout_s=5).upscale(_png(8, 8, 6))
    finally:
        running.stop()
        running.log_file.close()


def test_drq_serve_of_an_onnx_model_stops_cleanly_on_sigint(model: Path) -> None:
    http, grpc, metrics = _free_ports(3)
    command = [sys.executable, "-m", "drq.cli", "serve", str(model), "--http-port", str(http)]
    command += ["--grpc-port", str(grpc), "--metrics-port", str(metrics)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout.readline().startswith("wrote ")  # type: ignore[union-attr]
        banner = process.stdout.readline()  # type: ignore[union-attr]
        assert banner.startswith("serving ") and f"http://127.0.0.1:{http}" in banner, banner
        sr = ImageClient(f"grpc://127.0.0.1:{grpc}", timeout_s=30).upscale(_png(8, 8, 8))
        assert sr.startswith(b"\x89PNG")
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=30)
        assert process.returncode == 0
        assert "stopped on SIGINT (tritonserver exit code 0)" in out
        with socket.socket() as probe:  # nothing listens any more: the server is gone
            assert probe.connect_ex(("127.0.0.1", http)) != 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
