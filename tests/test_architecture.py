"""The import graph points down (STYLE.md §2) and torch-free modules import without torch or TensorRT."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("drq", "calib", "engine_builder", "plugins", "serve")
# `drq` holds the dispatcher and the torch-free contracts (image I/O, metrics, datasets, artifacts,
# recipe and manifest schemas, errors). The dispatcher names subcommands as strings, so it imports no
# stage; every stage may read the contracts. The runtime (`serve`) may register the plugins before
# deserialising an engine; the builder sits on top and may use everything.
MAY_IMPORT = {
    "drq": set(),
    "plugins": {"drq"},
    "calib": {"drq"},
    "serve": {"drq", "plugins"},
    "engine_builder": {"drq", "calib", "plugins", "serve"},
}
HEAVY = ("torch", "tensorrt", "tensorrt_rtx", "cuda", "pycuda", "triton", "onnxruntime")

# Modules that must import (and `drq --help` must work) with every heavy package blocked. torch-free by
# design (STYLE.md §2): drq/, everything in plugins/ but the Triton leaf, serve/, and calib's torch-free
# parts.
TORCH_MODULES = {
    "calib.models",
    "calib.quantizers",
    "calib.observers",
    "calib.policy",
    "calib.calibrate",
    "calib.finetune",
    "calib.plan",
    "calib.saft_loss",
    "calib.kernels",  # torch-facing wrappers of the numba kernels of finetuning
    "calib.adaround",
    "calib.gptq",
    "calib.bbit_format",
    "calib.simulate",
    "calib.quantize_command",
    "calib.report",
    "calib.zoo_command",
    "calib.inference",
    "calib.api",  # the Python API takes nn.Module objects
    "engine_builder.export",
    "engine_builder.api",
    "plugins.kernels",  # needs triton at module top (@triton.jit); only function bodies import it
}


def _modules(package: str) -> list[str]:
    names = []
    for path in sorted((REPO / package).rglob("*.py")):
        rel = path.relative_to(REPO).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names.append(".".join(parts))
    return names


def _project_imports(package: str) -> set[str]:
    found: set[str] = set()
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_down(package: str) -> None:
    bad = {imp for imp in _project_imports(package) if imp not in MAY_IMPORT[package] | {package}}
    assert not bad, f"{package} imports {sorted(bad)}"


def _is_torch_module(name: str) -> bool:
    return any(name == t or name.startswith(t + ".") for t in TORCH_MODULES)


def test_torch_free_modules_import_without_heavy_packages() -> None:
    modules = [m for p in PACKAGES for m in _modules(p) if not _is_torch_module(m)]
    # engine_builder modules other than export/ are torch-free by contract, but may import calib's torch
    # modules lazily inside functions; importing them must still not pull torch in.
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys
        BLOCKED = {HEAVY!r}
        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked heavy import: {{name}}")
                return None
        sys.meta_path.insert(0, Refuse())
        for name in {modules!r}:
            importlib.import_module(name)
        from drq.cli import main
        assert main(["--help"]) == 0
        leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not leaked, leaked
        print("ok", len({modules!r}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("ok"), proc.stdout[-500:]


def test_every_module_imports_with_optional_packages_missing() -> None:
    """Even torch modules import when TensorRT, CUDA bindings and Triton are absent (torch present)."""
    modules = [m for p in PACKAGES for m in _modules(p) if m != "plugins.kernels"]
    script = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys
        BLOCKED = ("tensorrt", "tensorrt_rtx", "cuda", "pycuda", "triton")
        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"blocked optional import: {{name}}")
                return None
        sys.meta_path.insert(0, Refuse())
        for name in {modules!r}:
            importlib.import_module(name)
        print("ok")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_drq_help_lists_every_subcommand() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "drq.cli", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0
    from drq.cli import SUBCOMMANDS

    for name in SUBCOMMANDS:
        assert f"  {name} " in proc.stdout


def test_every_subcommand_target_exists() -> None:
    """Each registered subcommand resolves to a callable (catches a renamed module or function)."""
    import importlib

    from drq.cli import SUBCOMMANDS

    for name, command in SUBCOMMANDS.items():
        module_name, func_name = command.target.split(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, func_name, None)), f"drq {name}: {command.target} is missing"
