"""Run the Triton kernels in Triton's interpreter and compare them bit for bit with the NumPy reference.

Executed as `TRITON_INTERPRET=1 python -m tests.plugins.interpret_check` by
`test_kernels_interpreter.py`: the interpreter is chosen when `@triton.jit` runs, i.e. when
`plugins.kernels` is first imported, so a fresh process with the variable set is the only robust way
to get it whatever else the test session imported. Prints one JSON object: case -> mismatch count.

The `jit/` cases run the TensorRT JIT plugins (`trtp.impl`, the TensorRT 10.6-10.8 path) end to end:
registered by `register_dual_region_plugins(impl="jit")` with the `tensorrt.plugin` stand-in, then
enqueued the way TensorRT enqueues them (`tests.fakes.tensorrt_plugin.run_impl`) on host buffers.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

SHAPES = {"n1": (1,), "n4095": (4095,), "n4096": (4096,), "n4097": (4097,), "nchw": (3, 64, 17, 19)}


def run() -> dict[str, int]:
    """Every (params set, shape, dtype) case for both kernels; value = number of differing bit patterns."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("interpret_check: run with TRITON_INTERPRET=1")
    import torch

    torch.set_num_threads(1)
    from plugins.kernels import dequantize_triton, quantize_triton
    from plugins.reference import dequantize, quantize
    from tests.plugins.edge_cases import params_sets, shaped_codes, shaped_floats

    results: dict[str, int] = {}
    for pi, (pname, params) in enumerate(sorted(params_sets().items())):
        p_t = torch.from_numpy(params)
        for si, (sname, shape) in enumerate(SHAPES.items()):
            seed = 100 * pi + si
            codes = shaped_codes(shape, seed)
            for dt, tdt, view in (
                (np.float32, torch.float32, np.uint32),
                (np.float16, torch.float16, np.uint16),
            ):
                got = dequantize_triton(torch.from_numpy(codes), p_t, torch.empty(shape, dtype=tdt)).numpy()
                want = dequantize(codes, params, dt)
                results[f"dequant/{pname}/{sname}/{np.dtype(dt).name}"] = int(
                    np.count_nonzero(got.view(view) != want.view(view))
                )
            x = shaped_floats(params, shape, seed)
            for dt in (np.float32, np.float16):
                with np.errstate(over="ignore"):
                    xi = x.astype(dt)
                got = quantize_triton(torch.from_numpy(xi), p_t, torch.empty(shape, dtype=torch.int8)).numpy()
                results[f"quantize/{pname}/{sname}/{np.dtype(dt).name}"] = int(
                    np.count_nonzero(got != quantize(xi, params))
                )
    results.update(run_jit_plugins())
    return results


JIT_SHAPES = {"n4097": (4097,), "nchw": (3, 64, 17, 19)}


def run_jit_plugins() -> dict[str, int]:
    """Both JIT plugins through the stand-in, every params set, fp32 and fp16; value = mismatches."""
    from plugins.reference import dequantize, quantize
    from plugins.trt_registration import DEQUANT_ID, QUANTIZE_ID, register_dual_region_plugins
    from tests.fakes import tensorrt_plugin as fake
    from tests.plugins.edge_cases import params_sets, shaped_codes, shaped_floats

    trt, trtp = fake.make_modules("10.8.0", with_aot=False)  # JIT only, as before TensorRT 10.9
    sys.modules["tensorrt"], sys.modules["tensorrt.plugin"] = trt, trtp
    if register_dual_region_plugins().impl != "jit":
        raise SystemExit("interpret_check: expected the JIT registration on TensorRT 10.8")
    results: dict[str, int] = {}
    for pi, (pname, params) in enumerate(sorted(params_sets().items())):
        p = fake.Tensor(params.copy())
        for si, (sname, shape) in enumerate(JIT_SHAPES.items()):
            seed = 1000 + 10 * pi + si
            codes = shaped_codes(shape, seed)
            for dt, onnx_type, view in ((np.float32, 1, np.uint32), (np.float16, 10, np.uint16)):
                out = np.full(shape, np.nan, dtype=dt)  # NaN: an element the plugin skipped shows up
                fake.run_impl(
                    DEQUANT_ID,
                    [fake.Tensor(codes), p],
                    [fake.Tensor(out)],
                    {"out_dtype": onnx_type},
                    stream=7,
                )
                want = dequantize(codes, params, dt)
                results[f"jit/dequant/{pname}/{sname}/{np.dtype(dt).name}"] = int(
                    np.count_nonzero(out.view(view) != want.view(view))
                )
                with np.errstate(over="ignore"):
                    x = shaped_floats(params, shape, seed).astype(dt)
                q = np.full(shape, 127, dtype=np.int8)  # 127 is never a valid code
                fake.run_impl(QUANTIZE_ID, [fake.Tensor(x), p], [fake.Tensor(q)], {}, stream=7)
                results[f"jit/quantize/{pname}/{sname}/{np.dtype(dt).name}"] = int(
                    np.count_nonzero(q != quantize(x, params))
                )
    return results


if __name__ == "__main__":
    json.dump(run(), sys.stdout)
