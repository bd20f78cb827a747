"""Start and stop a real Triton Inference Server (`tritonserver`) on a drq model repository.

Where the binary comes from, in this order: an explicit path; the `nvidia-pytriton` wheel (PyPI), which
bundles a CPU-capable `tritonserver` 2.51 with the python backend; `tritonserver` on PATH; the NGC
container's `/opt/tritonserver/bin/tritonserver`.

The wheel's python backend needs the `triton_python_backend_stub` built for the running Python in its
backend folder, and its shared libraries (`nvidia_pytriton.libs`) on LD_LIBRARY_PATH. drq never modifies
the installed package: it copies the backend and the matching stub into a temporary backend folder of its
own (`--backend-directory` for the server) and removes it when the server stops.

The python backend stub runs the model code with the first `python3` on PATH (its site-packages), so the
server's environment gets the running interpreter's folder first on PATH and drq's source root on
PYTHONPATH: the repository's `model.py` files import `serve.triton`. The server binds 127.0.0.1 unless
told otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from serve.triton.errors import ServerError

LOG = logging.getLogger(__name__)
NGC_BINARY = Path("/opt/tritonserver/bin/tritonserver")
NGC_BACKENDS = Path("/opt/tritonserver/backends")


@dataclass(frozen=True)
class ServerOptions:
    """How to run the server. Ports 0 are not allowed: Triton needs them fixed to report them."""

    repository: Path
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    tritonserver: Path | None = None
    backend_directory: Path | None = None
    ready_timeout_s: float = 120.0
    exit_timeout_s: int = 10
    log_verbose: int = 0

    def __post_init__(self) -> None:
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        if any(not 0 < p < 65536 for p in ports) or len(set(ports)) != 3:
            raise ServerError(f"ports: need three different ports in 1..65535, got {ports}")


@dataclass(frozen=True)
class Installation:
    """A tritonserver binary, its backend folder, and the extra library folder it needs (or None)."""

    binary: Path
    backends: Path
    libraries: Path | None
    stub: Path | None  # the python backend stub to copy next to the backend (pytriton wheel only)


def _pytriton_installation() -> Installation | None:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not (root / "bin" / "tritonserver").is_file():
        return None
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(
            f"{stub.parent.parent}: nvidia-pytriton has no python backend stub for Python {version}"
        )
    return Installation(
        root / "bin" / "tritonserver", root / "backends", root.parent.parent / "nvidia_pytriton.libs", stub
    )


def find_tritonserver(explicit: Path | None = None) -> Installation:
    """Locate tritonserver (order in the module docstring).

    Raises:
        ServerError: an explicit path is not an executable, or no server is installed.
    """
    if explicit is not None:
        if not (explicit.is_file() and os.access(explicit, os.X_OK)):
            raise ServerError(f"{explicit}: not an executable tritonserver")
        return Installation(explicit, explicit.parent.parent / "backends", None, None)
    found = _pytriton_installation()
    if found is not None:
        return found
    on_path = shutil.which("tritonserver")
    if on_path:
        binary = Path(on_path).resolve()
        return Installation(binary, binary.parent.parent / "backends", None, None)
    if NGC_BINARY.is_file():
        return Installation(NGC_BINARY, NGC_BACKENDS, None, None)
    raise ServerError(
        "tritonserver: not found; pip install nvidia-pytriton (CPU, bundles the server and its python "
        "backend), or run inside nvcr.io/nvidia/tritonserver, or pass --tritonserver PATH"
    )


def prepare_backends(install: Installation, workdir: Path) -> Path:
    """The backend folder to pass to the server: the installed one, or (wheel) a copy with the stub added."""
    if install.stub is None:
        return install.backends
    target = workdir / "backends"
    shutil.copytree(install.backends, target, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(install.stub, target / "python" / "triton_python_backend_stub")
    return target


def server_environment(install: Installation, base: dict[str, str]) -> dict[str, str]:
    """The child's environment: `base` plus this interpreter first on PATH, drq on PYTHONPATH, the wheel's
    libraries on LD_LIBRARY_PATH (the stub loads numpy, Pillow and onnxruntime from this environment)."""
    env = dict(base)
    source_root = str(Path(__file__).resolve().parents[2])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH", "")) if p)
    if install.libraries is not None:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (env.get("LD_LIBRARY_PATH", ""), str(install.libraries)) if p
        )
    return env


def server_command(options: ServerOptions, install: Installation, backends: Path) -> list[str]:
    """The tritonserver command line."""
    return [
        str(install.binary),
        f"--model-repository={options.repository.resolve()}",
        f"--backend-directory={backends}",
        f"--http-address={options.host}",
        f"--http-port={options.http_port}",
        f"--grpc-address={options.host}",
        f"--grpc-port={options.grpc_port}",
        f"--metrics-address={options.host}",
        f"--metrics-port={options.metrics_port}",
        "--allow-gpu-metrics=false",
        f"--exit-timeout-secs={options.exit_timeout_s}",
        f"--log-verbose={options.log_verbose}",
        "--strict-readiness=true",
    ]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


class TritonServer:
    """A running tritonserver process; use as a context manager (`start` / `stop`).

    Args:
        options: ports, repository, binary.
        log: where the server's stdout and stderr go (None: inherit this process's).
        env: the base environment for the child (the CLI passes os.environ).
    """

    def __init__(self, options: ServerOptions, log: IO[bytes] | None, env: dict[str, str]) -> None:
        if not options.repository.is_dir():
            raise ServerError(f"{options.repository}: no such model repository folder")
        self.options = options
        self.log = log
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.options.host}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://{self.options.host}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.host}:{self.options.metrics_port}/metrics"

    def start(self) -> TritonServer:
        """Start the server and wait until /v2/health/ready answers 200.

        Raises:
            ServerError: no server installed, it exited during start-up (with its last log line), or it
                was not ready within `ready_timeout_s`.
        """
        install = find_tritonserver(self.options.tritonserver)
        self._workdir = Path(tempfile.mkdtemp(prefix="drq_triton_"))
        backends = self.options.backend_directory or prepare_backends(install, self._workdir)
        command = server_command(self.options, install, backends)
        LOG.info("starting %s", " ".join(command))
        self.process = subprocess.Popen(
            command,
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log is not None else None,
            env=server_environment(install, self.env),
            start_new_session=True,  # our SIGINT (Ctrl-C) is forwarded by stop(), not delivered twice
        )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.ready_timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                code = self.process.returncode
                self.stop()
                raise ServerError(
                    f"{self.options.repository}: tritonserver exited with {code} during start-up "
                    "(see its log: a model that failed to load is named there)"
                )
            if _ready(f"{self.http_url}/v2/health/ready"):
                return
            time.sleep(0.25)
        self.stop()
        raise ServerError(
            f"{self.options.repository}: tritonserver not ready after {self.options.ready_timeout_s:g} s"
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, wait for Triton's own exit timeout (in-flight requests finish), then SIGKILL."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=self.options.exit_timeout_s + 5)
                except subprocess.TimeoutExpired:
                    self.kill()
            code = self.process.returncode
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    def kill(self) -> None:
        """SIGKILL the server and its python backend stubs (its process group)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
