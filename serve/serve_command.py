"""`drq serve`: run a real Triton Inference Server on a model repository (or an ONNX model).

    drq serve build/triton_repo [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002]
    drq serve build/imdn_x4_fp32.onnx    (an ONNX model or an engine: a repository with `drq triton-repo`'s
                                          defaults is written into a temporary folder first)

Binds 127.0.0.1 unless --host says otherwise, waits until Triton reports ready, prints the endpoints,
and stops the server cleanly (SIGTERM, Triton's exit timeout for in-flight requests) on Ctrl-C or
SIGTERM. Health: /v2/health/ready and /v2/health/live on the HTTP port; Prometheus metrics on the
metrics port.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
from pathlib import Path
from types import FrameType

from drq.cli_args import CommandParser
from serve.triton.errors import ServerError
from serve.triton.server import ServerOptions, TritonServer


def _parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="drq serve", description="Serve a drq model with the Triton Inference Server.")
    p.add_argument(
        "model", type=Path, help="a repository from `drq triton-repo`, or an ONNX model or engine (defaults)"
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--tritonserver", type=Path, help="the server binary (default: found, see docs)")
    p.add_argument("--backend-directory", type=Path, help="Triton backends folder (default: the install's)")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for readiness")
    p.add_argument("--exit-timeout", type=int, default=10, help="seconds in-flight requests get on stop")
    p.add_argument("--log-verbose", type=int, default=0, help="Triton's --log-verbose level")
    return p


def _repository(model: Path, workdir: Path) -> Path:
    if model.is_dir():
        return model
    if model.suffix in (".onnx", ".plan") and model.is_file():
        from serve.triton_repo_command import main as write_repo

        repo = workdir / "repository"
        write_repo(["--onnx" if model.suffix == ".onnx" else "--engine", str(model), "-o", str(repo)])
        return repo
    raise ServerError(f"{model}: not a model repository folder, an ONNX file or an engine (.plan)")


class _Stop(Exception):
    """Raised in the main thread by the SIGINT/SIGTERM handler."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    """Entry point of `drq serve`; returns when the server stopped (0 after a signal)."""
    args = _parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drq_serve_") as tmp:
        options = ServerOptions(
            repository=_repository(args.model, Path(tmp)),
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            metrics_port=args.metrics_port,
            tritonserver=args.tritonserver,
            backend_directory=args.backend_directory,
            ready_timeout_s=args.ready_timeout,
            exit_timeout_s=args.exit_timeout,
            log_verbose=args.log_verbose,
        )
        server = TritonServer(options, log=None, env=dict(os.environ))
        previous = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.start()
            print(
                f"serving {options.repository}: {server.http_url} (HTTP), {server.grpc_url} (gRPC), "
                f"{server.metrics_url} (metrics); Ctrl-C stops",
                flush=True,
            )
            server.process.wait()  # type: ignore[union-attr]
            raise ServerError(f"{options.repository}: tritonserver exited with {server.process.returncode}")  # type: ignore[union-attr]
        except _Stop as stop:
            code = server.stop()
            print(f"stopped on {stop} (tritonserver exit code {code})", flush=True)
            return 0
        finally:
            server.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
