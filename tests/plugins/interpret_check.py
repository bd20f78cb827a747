"""Run the Triton kernels in Triton's interpreter and compare them bit for bit with the NumPy reference.

Executed as `TRITON_INTERPRET=1 python -m tests.plugins.interpret_check` by
`test_kernels_interpreter.py`: the interpreter is chosen when `@triton.jit` runs, i.e. when
`plugins.kernels` is first imported, so a fresh process with the variable set is the only robust way
to get it whatever else the test session imported. Prints one JSON object: case -> mismatch count.
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
            for dt, tdt, view in ((np.float32, torch.float32, np.uint32),
                                  (np.float16, torch.float16, np.uint16)):
                got = dequantize_triton(torch.from_numpy(codes), p_t, torch.empty(shape, dtype=tdt)).numpy()
                want = dequantize(codes, params, dt)
                results[f"dequant/{pname}/{sname}/{np.dtype(dt).name}"] = int(
                    np.count_nonzero(got.view(view) != want.view(view)))
            x = shaped_floats(params, shape, seed)
            for dt in (np.float32, np.float16):
                with np.errstate(over="ignore"):
                    xi = x.astype(dt)
                got = quantize_triton(torch.from_numpy(xi), p_t, torch.empty(shape, dtype=torch.int8)).numpy()
                results[f"quantize/{pname}/{sname}/{np.dtype(dt).name}"] = int(
                    np.count_nonzero(got != quantize(xi, params)))
    return results


if __name__ == "__main__":
    json.dump(run(), sys.stdout)
