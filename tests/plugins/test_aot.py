"""Ahead-of-time PTX of the dual-region kernels: every architecture, launchable by TensorRT's AOT
plugin launcher (entry signature = inputs, extra scalars, outputs), and free of FMA / approximate
division."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from plugins.aot import (
    ARCHS,
    MANIFEST,
    MIN_PTX_ISA,
    SPECS,
    KernelSpec,
    compile_kernel,
    entry_params,
    load_kernel,
    parse_arch,
    ptx_isa,
    ptx_target,
    write_kernels,
)
from plugins.errors import PluginError
from plugins.spec import DEQUANT_OP, QUANTIZE_OP

pytest.importorskip("triton")

# TensorRT passes device pointers as 64-bit and SymInt32 extra args as 32-bit integers
PTX_TYPE = {"*i8": "u64", "*fp32": "u64", "*fp16": "u64", "i32": "u32"}


@pytest.fixture(scope="module")
def default_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What CI runs without a GPU: `drq kernels --out DIR` with the default architectures (every op,
    dtype and arch: 24 PTX files, about 15 s cold on 2 cores, cached by Triton afterwards)."""
    from plugins.cli import main

    out = tmp_path_factory.mktemp("ptx")
    assert main(["--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("arch", ARCHS)
def test_ptx_for_every_arch(default_set: Path, arch: int) -> None:
    manifest = json.loads((default_set / MANIFEST).read_text())
    entries = [e for e in manifest["kernels"] if e["arch"] == arch]
    assert sorted((e["op"], e["dtype"]) for e in entries) == sorted((s.op, s.dtype) for s in SPECS)
    for entry in entries:
        spec = KernelSpec(entry["op"], entry["dtype"])
        ptx = (default_set / entry["file"]).read_text()
        assert entry["file"] == spec.file_name(arch)
        assert ptx_target(ptx) in (f"sm_{arch}", f"sm_{arch}a") and entry["target"] == ptx_target(ptx)
        # the lowest PTX ISA for the arch, so drivers older than Triton's toolchain can JIT it
        assert ptx_isa(ptx) == f"{MIN_PTX_ISA[arch] // 10}.{MIN_PTX_ISA[arch] % 10}"
        assert re.search(rf"\.visible\s+\.entry\s+{spec.kernel_name}\s*\(", ptx)
        assert entry["kernel"] == spec.kernel_name
        # exactly what TensorRT's AOT launcher passes: input pointers, the n_elements SymInt32, the output
        assert [t for t, _ in entry_params(ptx)] == ["u64", "u64", "u32", "u64"]
        assert [t for t, _ in entry_params(ptx)] == [PTX_TYPE[a.triton_type] for a in spec.args]
        assert not re.search(r"\bfma\.|\bdiv\.(full|approx)", ptx), entry["file"]
        assert (entry["num_warps"], entry["block_x"], entry["constexprs"]["BLOCK"]) == (4, 128, 4096)


def test_ptx_uses_rounded_ops_and_vector_accesses() -> None:
    dequant = compile_kernel(KernelSpec(DEQUANT_OP, "fp32"), 90).ptx
    quant = compile_kernel(KernelSpec(QUANTIZE_OP, "fp16"), 90).ptx
    assert "mul.rn.f32" in dequant and "add.rn.f32" in dequant  # non-contractible
    assert "div.rn.f32" in quant  # IEEE division
    assert re.search(r"setp\.nan\.f(16|32)", quant)  # the NaN -> 0 test was not folded away
    assert "0f4B400000" in quant  # 1.5 * 2**23: the round-half-even constant survived compilation
    assert "ld.global.v4.b32" in dequant  # full blocks read 16 bytes of codes per access


def test_trimmed_ptx_assembles() -> None:
    """Dropping Triton's scratch parameters leaves PTX that ptxas accepts."""
    from triton.backends.nvidia.compiler import get_ptxas

    kernel = compile_kernel(KernelSpec(DEQUANT_OP, "fp16"), 90)
    ptxas = get_ptxas(90).path
    proc = subprocess.run(
        [ptxas, "-arch=sm_90a", "-o", "/dev/null", "-"],
        input=kernel.ptx,
        text=True,
        capture_output=True,
        timeout=120,
    )
    if proc.returncode and "-" in proc.stderr:  # older ptxas without stdin support
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stderr


def test_write_kernels_manifest_round_trip(tmp_path: Path) -> None:
    manifest_path = write_kernels(tmp_path, archs=(90,))
    assert manifest_path == tmp_path / MANIFEST
    manifest = json.loads(manifest_path.read_text())
    assert manifest["schema_version"] == 1
    files = sorted(p.name for p in tmp_path.glob("*.ptx"))
    assert files == sorted(
        [
            "dual_region_dequant_fp32_sm90.ptx",
            "dual_region_dequant_fp16_sm90.ptx",
            "dual_region_quantize_fp32_sm90.ptx",
            "dual_region_quantize_fp16_sm90.ptx",
        ]
    )
    assert not list(tmp_path.glob(".*drq-tmp*"))
    for entry in manifest["kernels"]:
        ptx = (tmp_path / entry["file"]).read_text()
        assert [t for t, _ in entry_params(ptx)] == [PTX_TYPE[a["type"]] for a in entry["args"]]
        assert [a["role"] for a in entry["args"]] == ["input", "input", "extra", "output"]
        assert entry["target"] == ptx_target(ptx) and entry["arch"] == 90
        assert entry["ptx_isa"] == "8.0"
    spec = KernelSpec(DEQUANT_OP, "fp16")
    kernel = load_kernel(tmp_path, spec, 90)
    assert kernel.ptx == (tmp_path / "dual_region_dequant_fp16_sm90.ptx").read_text()
    assert kernel.grid_x(4097) == 2 and kernel.grid_x(4096) == 1
    with pytest.raises(PluginError, match=r"no kernel for DualRegionDequant fp16 sm_80; recompile"):
        load_kernel(tmp_path, spec, 80)
    (tmp_path / "dual_region_dequant_fp16_sm90.ptx").write_text(kernel.ptx + "// edited\n")
    with pytest.raises(PluginError, match="sha256 differs"):
        load_kernel(tmp_path, spec, 90)
    (tmp_path / "dual_region_dequant_fp16_sm90.ptx").unlink()
    with pytest.raises(PluginError, match=r"fp16_sm90.ptx: listed in .*manifest.json but missing"):
        load_kernel(tmp_path, spec, 90)


def test_load_kernel_without_manifest(tmp_path: Path) -> None:
    with pytest.raises(PluginError, match=r"manifest.json: not found; run 'drq kernels --out"):
        load_kernel(tmp_path, SPECS[0], 90)


def test_launch_constants_match_the_kernel_module() -> None:
    from plugins import aot, kernels

    assert (aot.BLOCK, aot.NUM_WARPS) == (kernels.BLOCK, kernels.NUM_WARPS)


@pytest.mark.parametrize(("text", "arch"), [("sm_90", 90), ("sm90", 90), ("120", 120), ("sm_100a", 100)])
def test_parse_arch(text: str, arch: int) -> None:
    assert parse_arch(text) == arch


def test_parse_arch_rejects() -> None:
    with pytest.raises(PluginError, match=r"--arch 'hopper': expected a compute capability"):
        parse_arch("hopper")


def test_entry_params_needs_one_entry() -> None:
    with pytest.raises(PluginError, match="expected one .visible .entry, found 0"):
        entry_params(".version 8.0\n.target sm_90\n")
