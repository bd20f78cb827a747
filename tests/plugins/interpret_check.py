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


def _codes(shape: tuple[int, ...], seed: int) -> np.ndarray:
    from tests.plugins.edge_cases import all_codes

    n = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    codes = rng.integers(-128, 128, size=n, dtype=np.int16).astype(np.int8)
    edge = np.tile(all_codes(), 1 + n // 256)[:n]
    codes[: min(n, 256)] = edge[: min(n, 256)]  # every code, the unused ones included, when n >= 256
    if n < 256:
        codes[:] = rng.choice(all_codes(), size=n)
    return codes.reshape(shape)


def _floats(params: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    from tests.plugins.edge_cases import float_inputs

    n = int(np.prod(shape))
    pool = float_inputs(params, n_random=max(n, 1000), seed=seed)
    rng = np.random.default_rng(seed)
    # the special values and ties sit at the end of the pool: keep them first, then random fill
    special = pool[-min(n, 600):]
    rest = rng.choice(pool, size=n - special.size) if n > special.size else np.empty(0, np.float32)
    return np.concatenate([special, rest]).astype(np.float32).reshape(shape)


def run() -> dict[str, int]:
    """Every (params set, shape, dtype) case for both kernels; value = number of differing bit patterns."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("interpret_check: run with TRITON_INTERPRET=1")
    import torch

    torch.set_num_threads(1)
    from plugins.kernels import dequantize_triton, quantize_triton
    from plugins.reference import dequantize, quantize
    from tests.plugins.edge_cases import params_sets

    results: dict[str, int] = {}
    for pi, (pname, params) in enumerate(sorted(params_sets().items())):
        p_t = torch.from_numpy(params)
        for si, (sname, shape) in enumerate(SHAPES.items()):
            seed = 100 * pi + si
            codes = _codes(shape, seed)
            for dt, tdt, view in ((np.float32, torch.float32, np.uint32),
                                  (np.float16, torch.float16, np.uint16)):
                got = dequantize_triton(torch.from_numpy(codes), p_t, torch.empty(shape, dtype=tdt)).numpy()
                want = dequantize(codes, params, dt)
                results[f"dequant/{pname}/{sname}/{np.dtype(dt).name}"] = int(
                    np.count_nonzero(got.view(view) != want.view(view)))
            x = _floats(params, shape, seed)
            for dt in (np.float32, np.float16):
                with np.errstate(over="ignore"):
                    xi = x.astype(dt)
                got = quantize_triton(torch.from_numpy(xi), p_t, torch.empty(shape, dtype=torch.int8)).numpy()
                results[f"quantize/{pname}/{sname}/{np.dtype(dt).name}"] = int(
                    np.count_nonzero(got != quantize(xi, params)))
    return results


if __name__ == "__main__":
    json.dump(run(), sys.stdout)
