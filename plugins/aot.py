"""Compile the dual-region Triton kernels ahead of time to PTX, without a GPU.

`triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))` runs Triton's whole CUDA pipeline on
the host (ttir -> ttgir -> llir -> ptx, and cubin through Triton's bundled ptxas), so PTX for any
architecture can be produced on a CPU-only machine. `write_kernels` writes one
`<kernel>_<dtype>_sm<cc>.ptx` per (op, float dtype, arch) plus `manifest.json` describing how to launch
each: the contract with `plugins.trt_registration` (TensorRT AOT plugins) and any other launcher.

Two adjustments make the PTX safe to hand to TensorRT:

* `enable_fp_fusion=False`: mul/add are emitted as `mul.rn.f32` / `add.rn.f32`, which ptxas may not
  contract into FMA (bit exactness, docs/dual_region_codes.md). `compile_kernel` refuses PTX with
  `fma` or approximate division in it.
* Triton >= 3.3 appends hidden `global_scratch` / `profile_scratch` pointer parameters to every entry.
  TensorRT's AOT launcher passes exactly inputs, extra scalar args and outputs
  (`tensorrt.plugin.aot_impl`), so the unused trailing parameters are removed from the `.entry`
  signature; `compile_kernel` checks that the kernel needs no scratch memory and never reads them.

Torch-free; imports triton (and `plugins.kernels`) only inside the functions that compile.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from drq.artifacts import atomic_write_text
from drq.versions import VersionError, parse_compute_capability
from plugins.errors import MissingDependency, PluginError
from plugins.spec import DEQUANT_OP, QUANTIZE_OP

ARCHS: Final = (80, 86, 89, 90, 100, 120)
"""Compute capabilities compiled by default (Ampere .. Blackwell consumer)."""
MIN_PTX_ISA: Final = {80: 70, 86: 71, 89: 78, 90: 80, 100: 86, 120: 87}
"""Lowest PTX ISA (x10) that can target each architecture. The PTX is emitted at this version rather
than the bundled toolchain's newest, so older drivers can still JIT it inside TensorRT."""
MANIFEST: Final = "manifest.json"
MANIFEST_SCHEMA_VERSION: Final = 1
BLOCK: Final = 4096  # == plugins.kernels.BLOCK; kept here so the manifest needs no triton import
NUM_WARPS: Final = 4
GRID_RULE: Final = "grid_x = cdiv(n_elements, BLOCK); grid_y = grid_z = 1; block_x = num_warps * 32"

FloatDtype = Literal["fp32", "fp16"]
FLOAT_DTYPES: Final[tuple[FloatDtype, ...]] = ("fp32", "fp16")


@dataclass(frozen=True)
class KernelArg:
    """One kernel parameter in launch order; `role` is where TensorRT's AOT launcher takes it from."""

    name: str
    triton_type: str  # "*i8", "*fp32", "*fp16", "i32"
    role: Literal["input", "extra", "output"]


@dataclass(frozen=True)
class KernelSpec:
    """One specialisation of one kernel: the op and the dtype of its floating-point side."""

    op: str  # DEQUANT_OP or QUANTIZE_OP
    dtype: FloatDtype  # dequant output / quantize input

    @property
    def kernel_name(self) -> str:
        return "dual_region_dequant_kernel" if self.op == DEQUANT_OP else "dual_region_quantize_kernel"

    @property
    def args(self) -> tuple[KernelArg, ...]:
        """Launch order: input tensors, extra scalars, outputs (TensorRT AOT plugin convention)."""
        if self.op == DEQUANT_OP:
            return (
                KernelArg("codes_ptr", "*i8", "input"),
                KernelArg("params_ptr", "*fp32", "input"),
                KernelArg("n_elements", "i32", "extra"),
                KernelArg("out_ptr", f"*{self.dtype}", "output"),
            )
        return (
            KernelArg("x_ptr", f"*{self.dtype}", "input"),
            KernelArg("params_ptr", "*fp32", "input"),
            KernelArg("n_elements", "i32", "extra"),
            KernelArg("out_ptr", "*i8", "output"),
        )

    def file_name(self, arch: int) -> str:
        return f"{self.kernel_name.removesuffix('_kernel')}_{self.dtype}_sm{arch}.ptx"


SPECS: Final = tuple(KernelSpec(op, dt) for op in (DEQUANT_OP, QUANTIZE_OP) for dt in FLOAT_DTYPES)


@dataclass(frozen=True)
class CompiledKernel:
    """PTX of one kernel specialisation for one architecture, with what a launcher needs."""

    spec: KernelSpec
    arch: int
    name: str  # PTX .entry name
    ptx: str
    num_warps: int
    shared_mem: int  # dynamic shared memory bytes to pass at launch
    block: int  # elements per program (the BLOCK constexpr)

    @property
    def block_x(self) -> int:
        return self.num_warps * 32

    def grid_x(self, n_elements: int) -> int:
        return -(-n_elements // self.block)


def parse_arch(text: str) -> int:
    """`sm_90`, `sm90` or `90` -> 90.

    Raises:
        PluginError: not a compute capability.
    """
    try:
        major, minor = parse_compute_capability(text)
    except VersionError as err:
        raise PluginError(f"--arch {text!r}: expected a compute capability such as sm_90 or 90") from err
    return major * 10 + minor


def _import_triton() -> Any:
    try:
        import triton
    except ImportError as err:
        raise MissingDependency(
            "compiling the dual-region kernels needs triton (pip install 'drq[triton]')"
        ) from err
    return triton


_ENTRY = re.compile(r"(\.visible\s+\.entry\s+(\w+)\s*\()(.*?)(\))", re.S)


def entry_params(ptx: str) -> list[tuple[str, str]]:
    """The `.entry` parameters of a single-kernel PTX module as (ptx type, name), in order.

    Raises:
        PluginError: the PTX has no (or more than one) visible entry.
    """
    entries = _ENTRY.findall(ptx)
    if len(entries) != 1:
        raise PluginError(f"PTX: expected one .visible .entry, found {len(entries)}")
    params = []
    for decl in entries[0][2].split(","):
        words = decl.split()
        if words:
            # ".param .u64 .ptr .global .align 1 NAME" or ".param .u32 NAME": type is the first .u/.b/.s/.f
            ptx_type = next(w for w in words[1:] if re.fullmatch(r"\.[usbf]\d+", w))
            params.append((ptx_type[1:], words[-1]))
    return params


def ptx_isa(ptx: str) -> str:
    """The `.version` (PTX ISA) of a PTX module, e.g. `8.0`."""
    match = re.search(r"^\.version\s+(\S+)", ptx, re.M)
    if not match:
        raise PluginError("PTX: no .version line")
    return match.group(1)


def ptx_target(ptx: str) -> str:
    """The `.target` of a PTX module, e.g. `sm_90a`."""
    match = re.search(r"^\.target\s+(\w+)", ptx, re.M)
    if not match:
        raise PluginError("PTX: no .target line")
    return match.group(1)


def _trim_entry(ptx: str, name: str, keep: int) -> str:
    """Drop entry parameters after the first `keep` (Triton's unused scratch pointers)."""
    match = _ENTRY.search(ptx)
    if match is None:
        raise PluginError(f"PTX of {name}: no .visible .entry")
    decls = [d.strip() for d in match.group(3).split(",") if d.strip()]
    for dropped in decls[keep:]:
        param_name = dropped.split()[-1]
        if re.search(rf"\[{re.escape(param_name)}\]", ptx):
            raise PluginError(f"PTX of {name}: hidden parameter {param_name} is used; cannot drop it")
    body = ",\n\t".join(decls[:keep])
    return ptx[: match.start(3)] + "\n\t" + body + "\n" + ptx[match.end(3) :]


def compile_kernel(spec: KernelSpec, arch: int, ptx_version: int | None = None) -> CompiledKernel:
    """Compile one kernel specialisation to PTX for compute capability `arch` (no GPU needed).

    `ptx_version` is the PTX ISA x10 (e.g. 80); default `MIN_PTX_ISA[arch]`, Triton's own otherwise.

    Raises:
        MissingDependency: triton is not installed.
        PluginError: the PTX would not be bit exact (FMA, approximate division) or needs scratch memory.
    """
    triton = _import_triton()
    from triton.backends.compiler import GPUTarget

    from plugins import kernels

    fn = getattr(kernels, spec.kernel_name)
    signature = {a.name: a.triton_type for a in spec.args} | {"BLOCK": "constexpr"}
    # every pointer is 16-byte aligned (TensorRT and the caching allocators align far more), which lets
    # full blocks use 16-byte vector loads and stores
    pointers = [i for i, a in enumerate(spec.args) if a.triton_type.startswith("*")]
    attrs = {(i,): [["tt.divisibility", 16]] for i in pointers}
    src = triton.compiler.ASTSource(fn=fn, signature=signature, constexprs={"BLOCK": BLOCK}, attrs=attrs)
    options: dict[str, Any] = {"num_warps": NUM_WARPS, "enable_fp_fusion": False}
    isa = ptx_version if ptx_version is not None else MIN_PTX_ISA.get(arch)
    if isa is not None:
        options["ptx_version"] = isa
    compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)
    meta = compiled.metadata
    name = meta.name
    for scratch in ("global_scratch_size", "profile_scratch_size"):
        if getattr(meta, scratch, 0):
            raise PluginError(
                f"{name} sm_{arch}: needs {scratch}={getattr(meta, scratch)}; "
                "TensorRT's AOT launcher cannot provide scratch memory"
            )
    ptx = _trim_entry(compiled.asm["ptx"], name, len(spec.args))
    inexact = sorted(set(re.findall(r"\b(fma\.\w+(?:\.\w+)*|div\.(?:full|approx)\.\w+)", ptx)))
    if inexact:
        raise PluginError(f"{name} sm_{arch}: PTX contains {inexact}; the result would not be bit exact")
    return CompiledKernel(
        spec=spec,
        arch=arch,
        name=name,
        ptx=ptx,
        num_warps=int(meta.num_warps),
        shared_mem=int(meta.shared),
        block=BLOCK,
    )


def _manifest_entry(k: CompiledKernel) -> dict[str, Any]:
    return {
        "file": k.spec.file_name(k.arch),
        "op": k.spec.op,
        "dtype": k.spec.dtype,
        "arch": k.arch,
        "target": ptx_target(k.ptx),
        "ptx_isa": ptx_isa(k.ptx),
        "kernel": k.name,
        "args": [{"name": a.name, "type": a.triton_type, "role": a.role} for a in k.spec.args],
        "constexprs": {"BLOCK": k.block},
        "num_warps": k.num_warps,
        "block_x": k.block_x,
        "shared_mem": k.shared_mem,
        "sha256": hashlib.sha256(k.ptx.encode()).hexdigest(),
    }


def write_kernels(
    out_dir: str | os.PathLike[str], archs: tuple[int, ...] = ARCHS, specs: tuple[KernelSpec, ...] = SPECS
) -> Path:
    """Compile every (spec, arch) to `out_dir/<kernel>_<dtype>_sm<cc>.ptx` and write `manifest.json`.

    Each file is written atomically; the manifest is written last, so a reader that finds it finds
    every PTX it lists. Returns the manifest path.

    Raises:
        MissingDependency: triton is not installed.
        PluginError: a kernel failed the bit-exactness checks of `compile_kernel`.
    """
    triton = _import_triton()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for arch in archs:
        for spec in specs:
            kernel = compile_kernel(spec, arch)
            atomic_write_text(out / spec.file_name(arch), kernel.ptx)
            entries.append(_manifest_entry(kernel))
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "triton_version": triton.__version__,
        "grid": GRID_RULE,
        "kernels": entries,
    }
    path = out / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def load_kernel(kernel_dir: str | os.PathLike[str], spec: KernelSpec, arch: int) -> CompiledKernel:
    """Read one precompiled kernel back from a `write_kernels` folder, checking it against the manifest.

    Raises:
        PluginError: missing or newer manifest, no entry for (spec, arch), or a PTX whose hash differs.
    """
    folder = Path(kernel_dir)
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise PluginError(f"{path}: not found; run 'drq kernels --out {folder}'") from err
    except json.JSONDecodeError as err:
        raise PluginError(f"{path}: not JSON ({err.msg} at line {err.lineno})") from err
    if manifest.get("schema_version") != MANIFEST_SCHEMA_VERSION:
        raise PluginError(
            f"{path}: schema_version {manifest.get('schema_version')!r}, "
            f"this drq reads {MANIFEST_SCHEMA_VERSION}"
        )
    for entry in manifest.get("kernels", []):
        if (entry.get("op"), entry.get("dtype"), entry.get("arch")) == (spec.op, spec.dtype, arch):
            try:
                ptx = (folder / entry["file"]).read_text(encoding="utf-8")
            except FileNotFoundError as err:
                raise PluginError(f"{folder / entry['file']}: listed in {path} but missing") from err
            if hashlib.sha256(ptx.encode()).hexdigest() != entry["sha256"]:
                raise PluginError(f"{folder / entry['file']}: sha256 differs from {path}")
            return CompiledKernel(
                spec=spec,
                arch=arch,
                name=entry["kernel"],
                ptx=ptx,
                num_warps=int(entry["num_warps"]),
                shared_mem=int(entry["shared_mem"]),
                block=int(entry["constexprs"]["BLOCK"]),
            )
    raise PluginError(
        f"{path}: no kernel for {spec.op} {spec.dtype} sm_{arch}; "
        f"recompile with 'drq kernels --out {folder} --arch sm_{arch}'"
    )
