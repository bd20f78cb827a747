"""Triton kernels of DualRegionDequant / DualRegionQuantize (docs/dual_region_codes.md), bit exact.

Leaf module: it imports triton at the top (`@triton.jit` needs it); nothing else in the project imports
it at module level. The kernels run in Triton's interpreter (`TRITON_INTERPRET=1`, CPU) and compile to
PTX without a GPU (`plugins.aot`). torch is imported only inside the launch wrappers.

Argument order is the one TensorRT's AOT Python plugins launch with (`tensorrt.plugin.aot_impl`:
input tensors, then the extra scalar arguments, then the outputs; see
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/tensorrt.plugin/trt_plugin_aot_impl/index.html):

    dual_region_dequant_kernel(codes: *i8, params: *fp32, n_elements: i32, out: *fp32|*fp16, BLOCK)
    dual_region_quantize_kernel(x: *fp32|*fp16, params: *fp32, n_elements: i32, out: *i8, BLOCK)

Bit exactness on the GPU:

* divisions use `tl.math.div_rn` (IEEE `div.rn.f32`); plain `/` lowers to the approximate `div.full.f32`.
* multiply/add must not contract into FMA: compile with `enable_fp_fusion=False` (the JIT wrappers
  below and `plugins.aot` do), so LLVM's NVPTX backend emits `mul.rn.f32` / `add.rn.f32`, which no
  downstream ptxas (Triton's, TensorRT's or the driver's PTX JIT) may fuse. `tests/plugins/test_aot.py`
  checks the PTX for `fma` and `div.full`.
* round half to even is `(t + 1.5 * 2**23) - 1.5 * 2**23` on |t| <= 129 << 2**22: the sum lies in
  [2**23, 2**24) where the float32 spacing is 1, so the add.rn rounds t to the nearest integer, ties to
  even, and the subtraction is exact. libdevice `rint` would do the same on the GPU, but the interpreter
  cannot run libdevice calls, and one code path for both keeps the interpreter tests meaningful.
"""

from __future__ import annotations

from typing import Any, Final

import triton
import triton.language as tl

BLOCK: Final = 4096
"""Elements per program: 4 warps x 32 threads x 32 elements; int8 loads are 2 x 16 bytes per thread."""
NUM_WARPS: Final = 4
_ROUND_MAGIC: Final = 12582912.0  # 1.5 * 2**23


@triton.jit
def _load_params(params_ptr):
    # params layout: plugins.spec (BP, S_D, S_P, S_N, D, P, N) = 0..6
    bp = tl.load(params_ptr + 0)
    s_d = tl.load(params_ptr + 1)
    s_p = tl.load(params_ptr + 2)
    s_n = tl.load(params_ptr + 3)
    d = tl.load(params_ptr + 4)
    p = tl.load(params_ptr + 5)
    n = tl.load(params_ptr + 6)
    return bp, s_d, s_p, s_n, d, p, n


@triton.jit
def _rint_clamped(t, lo, hi):
    """Round half to even, then clamp to [lo, hi]; t is pre-clamped so the magic-number rounding holds."""
    t = tl.minimum(tl.maximum(t, lo - 1.0), hi + 1.0)
    r = (t + 12582912.0) - 12582912.0
    return tl.minimum(tl.maximum(r, lo), hi)


@triton.jit
def _dequant_block(q8, bp, s_d, s_p, s_n, d, p, n):
    q = q8.to(tl.float32)
    q = tl.minimum(tl.maximum(q, -(d + n)), d + p)
    dense = q * s_d
    pos = bp + (q - d) * s_p
    neg = -(bp + (-q - d) * s_n)
    return tl.where(q > d, pos, tl.where(q < -d, neg, dense))


@triton.jit
def _quantize_block(x_in, bp, s_d, s_p, s_n, d, p, n):
    x = x_in.to(tl.float32)  # fp16 -> fp32 is exact
    dense = _rint_clamped(tl.math.div_rn(x, s_d), -d, d)
    pos = d + _rint_clamped(tl.math.div_rn(x - bp, s_p), 0.0, p)
    has_neg = s_n > 0.0
    s_n_safe = tl.where(has_neg, s_n, 1.0)  # a tail-less quantizer never reads this branch
    neg = -(d + _rint_clamped(tl.math.div_rn(-x - bp, s_n_safe), 0.0, n))
    neg = tl.where(has_neg, neg, -d)
    q = tl.where(tl.abs(x) <= bp, dense, tl.where(x > bp, pos, neg))
    q = tl.where(x != x, 0.0, q)  # NaN -> 0
    return q.to(tl.int8)


@triton.jit
def dual_region_dequant_kernel(codes_ptr, params_ptr, n_elements, out_ptr, BLOCK: tl.constexpr):
    """Decode int8 codes to the output pointer's dtype (fp32 or fp16, one round-to-nearest-even)."""
    bp, s_d, s_p, s_n, d, p, n = _load_params(params_ptr)
    start = tl.program_id(0) * BLOCK
    offs = start + tl.arange(0, BLOCK)
    # Full blocks load and store without a mask so the compiler can emit 16-byte vector accesses; only
    # the last, partial block pays for the mask.
    if start + BLOCK <= n_elements:
        v = _dequant_block(tl.load(codes_ptr + offs), bp, s_d, s_p, s_n, d, p, n)
        tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty))
    else:
        mask = offs < n_elements
        v = _dequant_block(tl.load(codes_ptr + offs, mask=mask, other=0), bp, s_d, s_p, s_n, d, p, n)
        tl.store(out_ptr + offs, v.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def dual_region_quantize_kernel(x_ptr, params_ptr, n_elements, out_ptr, BLOCK: tl.constexpr):
    """Encode fp32/fp16 values as int8 dual-region codes."""
    bp, s_d, s_p, s_n, d, p, n = _load_params(params_ptr)
    start = tl.program_id(0) * BLOCK
    offs = start + tl.arange(0, BLOCK)
    if start + BLOCK <= n_elements:
        tl.store(out_ptr + offs, _quantize_block(tl.load(x_ptr + offs), bp, s_d, s_p, s_n, d, p, n))
    else:
        mask = offs < n_elements
        q = _quantize_block(tl.load(x_ptr + offs, mask=mask, other=0.0), bp, s_d, s_p, s_n, d, p, n)
        tl.store(out_ptr + offs, q, mask=mask)


def grid(n_elements: int, block: int = BLOCK) -> tuple[int]:
    """One program per BLOCK elements (the grid rule recorded in the AOT manifest)."""
    return (triton.cdiv(n_elements, block),)


def _check(name: str, tensor: Any, dtypes: tuple[Any, ...], what: str) -> None:
    from plugins.errors import PluginError

    if tensor.dtype not in dtypes:
        raise PluginError(f"{name}: {what} must be {' or '.join(str(d) for d in dtypes)}, got {tensor.dtype}")
    if not tensor.is_contiguous():
        raise PluginError(f"{name}: {what} must be contiguous")


def _check_launch(name: str, inp: Any, params: Any, out: Any) -> int:
    import torch

    from plugins.errors import PluginError
    from plugins.spec import NUM_PARAMS

    _check(name, params, (torch.float32,), "params")
    if tuple(params.shape) != (NUM_PARAMS,):
        raise PluginError(f"{name}: params must have shape ({NUM_PARAMS},), got {tuple(params.shape)}")
    devices = {str(t.device) for t in (inp, params, out)}
    if len(devices) > 1:
        raise PluginError(f"{name}: input, params and output must be on one device, got {sorted(devices)}")
    if inp.shape != out.shape:
        raise PluginError(f"{name}: input shape {tuple(inp.shape)} != output shape {tuple(out.shape)}")
    n = inp.numel()
    if n >= 2**31:
        raise PluginError(f"{name}: {n} elements; the kernels index with int32 (< 2**31)")
    return n


def dequantize_triton(codes: Any, params: Any, out: Any) -> Any:
    """Launch the dequant kernel: int8 `codes` -> `out` (fp32 or fp16, same shape, contiguous).

    `params` is the float32[7] vector of `plugins.spec` on the same device. Returns `out`.

    Raises:
        PluginError: wrong dtype, shape or layout.
    """
    import torch

    _check("dequantize_triton", codes, (torch.int8,), "codes")
    _check("dequantize_triton", out, (torch.float32, torch.float16), "out")
    n = _check_launch("dequantize_triton", codes, params, out)
    if n:
        dual_region_dequant_kernel[grid(n)](
            codes, params, n, out, BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False
        )
    return out


def quantize_triton(x: Any, params: Any, out: Any) -> Any:
    """Launch the quantize kernel: fp32/fp16 `x` -> int8 `out` (same shape, contiguous). Returns `out`.

    Raises:
        PluginError: wrong dtype, shape or layout.
    """
    import torch

    _check("quantize_triton", x, (torch.float32, torch.float16), "x")
    _check("quantize_triton", out, (torch.int8,), "out")
    n = _check_launch("quantize_triton", x, params, out)
    if n:
        dual_region_quantize_kernel[grid(n)](
            x, params, n, out, BLOCK=BLOCK, num_warps=NUM_WARPS, enable_fp_fusion=False
        )
    return out
