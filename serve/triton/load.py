"""Bounded load against a running server: closed-loop concurrency, open-loop arrival rate, process RSS.

Everything here is bounded in request count and time, and meant for loopback servers only: closed
loops (`closed_loop`) measure throughput and latency percentiles at a fixed concurrency (`drq bench
--server`); an open loop (`open_loop`) sends at a fixed rate whatever the server's pace, which is what
overloads it (the load test sends at twice the measured capacity and expects only successes and 503s).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serve.triton.client import ImageClient, import_tritonclient, parse_url
from serve.triton.errors import ClientError
from serve.triton.repository import IMAGE_MODEL


@dataclass(frozen=True)
class LoadResult:
    """Latencies (seconds, in completion order) and wall time of one closed-loop run."""

    concurrency: int
    latencies: tuple[float, ...]
    wall_s: float

    @property
    def throughput(self) -> float:
        """Completed calls per second."""
        return len(self.latencies) / self.wall_s

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.latencies), q) * 1000.0)


def closed_loop(make_call: Callable[[], Callable[[], object]], concurrency: int, requests: int) -> LoadResult:
    """`requests` calls spread over `concurrency` threads, each calling as soon as its last call returned.

    Args:
        make_call: gives each thread its own call (e.g. one `ImageClient` per thread).

    Raises:
        ClientError: a call failed (the first failure is re-raised after all threads stopped).
    """
    if concurrency < 1 or requests < concurrency:
        raise ClientError(f"load: need 1 <= concurrency <= requests, got {concurrency}, {requests}")
    latencies: list[float] = []
    failures: list[BaseException] = []
    lock = threading.Lock()
    remaining = [requests]

    def worker(call: Callable[[], object]) -> None:
        while True:
            with lock:
                if remaining[0] == 0 or failures:
                    return
                remaining[0] -= 1
            t0 = time.perf_counter()
            try:
                call()
            except Exception as err:  # reported after the run, with the others stopped
                with lock:
                    failures.append(err)
                return
            with lock:
                latencies.append(time.perf_counter() - t0)

    calls = [make_call() for _ in range(concurrency)]
    threads = [threading.Thread(target=worker, args=(c,)) for c in calls]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if failures:
        raise failures[0]
    return LoadResult(concurrency, tuple(latencies), wall)


def sequential_rate(url: str, payload: bytes, requests: int, timeout_s: float = 60.0) -> float:
    """Requests per second one client gets back to back (after one warm-up request)."""
    client = ImageClient(url, timeout_s=timeout_s)
    try:
        client.upscale(payload)
        result = closed_loop(lambda: lambda: client.upscale(payload), 1, requests)
    finally:
        client.close()
    return result.throughput


def open_loop(
    url: str, payload: bytes, rate: float, count: int, max_seconds: float, timeout_s: float
) -> list[str]:
    """Send `count` requests at `rate` per second over gRPC (asynchronously), stopping early after
    `max_seconds`; returns one outcome per request sent: "ok", "unavailable" (503) or "error: <reason>".

    Raises:
        ClientError: a bad URL or rate, or answers still missing `timeout_s` after the last send.
    """
    endpoint = parse_url(url)
    if endpoint.protocol != "grpc" or rate <= 0 or count < 1:
        raise ClientError(f"{url}: the open loop needs a grpc:// URL, a rate > 0 and count >= 1")
    grpc = import_tritonclient("grpc")
    client = grpc.InferenceServerClient(endpoint.address)
    data = np.frombuffer(payload, np.uint8)
    outcomes: list[str] = []
    done = threading.Condition()

    def on_answer(result: object, error: object) -> None:
        status = str(error.status()) if error is not None else ""  # type: ignore[attr-defined]
        outcome = (
            "ok"
            if error is None
            else "unavailable"
            if status == "StatusCode.UNAVAILABLE"
            else f"error: {error}"
        )
        with done:
            outcomes.append(outcome)
            done.notify_all()

    started = time.perf_counter()
    sent = 0
    try:
        while sent < count and time.perf_counter() - started < max_seconds:
            time.sleep(max(0.0, started + sent / rate - time.perf_counter()))
            tensor = grpc.InferInput("image", [data.size], "UINT8")
            tensor.set_data_from_numpy(data)
            client.async_infer(IMAGE_MODEL, [tensor], on_answer, client_timeout=timeout_s)
            sent += 1
        with done:
            if not done.wait_for(lambda: len(outcomes) == sent, timeout=timeout_s + 5):
                raise ClientError(
                    f"{url}: {sent - len(outcomes)} of {sent} answers missing after {timeout_s:g} s"
                )
            return list(outcomes)
    finally:
        client.close()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # the process exited while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def process_tree_rss_mib(pid: int) -> float:
    """Resident set size of `pid` and all its descendants (the server and its backend stubs), MiB."""
    total_kib, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        total_kib += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
        pending += _children(current)
    return total_kib / 1024.0
