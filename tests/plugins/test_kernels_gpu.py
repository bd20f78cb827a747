"""On a CUDA GPU: the compiled kernels (Triton JIT, and the trimmed AOT PTX launched the way TensorRT
launches it) equal the NumPy reference bit for bit. Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest

from plugins.reference import dequantize, quantize
from tests.plugins.edge_cases import params_sets, shaped_codes, shaped_floats
from tests.plugins.interpret_check import SHAPES

pytestmark = pytest.mark.gpu


def _bits(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32)


@pytest.mark.parametrize("shape", list(SHAPES.values()) + [(1 << 22) + 3], ids=[*SHAPES, "n4M"])
def test_triton_jit_on_gpu_is_bit_exact(shape: tuple[int, ...] | int) -> None:
    torch = pytest.importorskip("torch")
    from plugins.kernels import dequantize_triton, quantize_triton

    shape = (shape,) if isinstance(shape, int) else shape
    for seed, (name, params) in enumerate(sorted(params_sets().items())):
        p = torch.from_numpy(params).cuda()
        codes = shaped_codes(shape, seed)
        for np_dt, t_dt in ((np.float32, torch.float32), (np.float16, torch.float16)):
            out = torch.empty(shape, dtype=t_dt, device="cuda")
            got = dequantize_triton(torch.from_numpy(codes).cuda(), p, out)
            assert np.array_equal(_bits(got.cpu().numpy()), _bits(dequantize(codes, params, np_dt))), name
            with np.errstate(over="ignore"):
                x = shaped_floats(params, shape, seed).astype(np_dt)
            q = torch.empty(shape, dtype=torch.int8, device="cuda")
            quantize_triton(torch.from_numpy(x).cuda(), p, q)
            assert np.array_equal(q.cpu().numpy(), quantize(x, params)), name


def test_aot_ptx_launch_like_tensorrt_is_bit_exact() -> None:
    """Load the trimmed PTX with the CUDA driver and pass exactly (inputs, n_elements, output)."""
    torch = pytest.importorskip("torch")
    cu = pytest.importorskip("cuda.bindings.driver")
    import ctypes

    from plugins.aot import KernelSpec, compile_kernel
    from plugins.spec import DEQUANT_OP, QUANTIZE_OP

    major, minor = torch.cuda.get_device_capability()
    torch.cuda.init()
    params = params_sets()["b8_two_tails"]
    p = torch.from_numpy(params).cuda()
    shape = (3, 64, 17, 19)
    n = int(np.prod(shape))
    codes = shaped_codes(shape, 7)
    x = shaped_floats(params, shape, 7)
    cases = [
        (
            KernelSpec(DEQUANT_OP, "fp32"),
            torch.from_numpy(codes).cuda(),
            torch.empty(shape, device="cuda"),
            dequantize(codes, params, np.float32),
        ),
        (
            KernelSpec(QUANTIZE_OP, "fp32"),
            torch.from_numpy(x).cuda(),
            torch.empty(shape, dtype=torch.int8, device="cuda"),
            quantize(x, params),
        ),
    ]
    for spec, inp, out, want in cases:
        kernel = compile_kernel(spec, 10 * major + minor)
        err, module = cu.cuModuleLoadData(kernel.ptx.encode() + b"\0")
        assert err == cu.CUresult.CUDA_SUCCESS, err
        err, func = cu.cuModuleGetFunction(module, kernel.name.encode())
        assert err == cu.CUresult.CUDA_SUCCESS, err
        args = (
            (inp.data_ptr(), p.data_ptr(), n, out.data_ptr()),
            (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_void_p),
        )
        stream = torch.cuda.current_stream().cuda_stream
        (err,) = cu.cuLaunchKernel(
            func, kernel.grid_x(n), 1, 1, kernel.block_x, 1, 1, kernel.shared_mem, stream, args, 0
        )
        assert err == cu.CUresult.CUDA_SUCCESS, err
        torch.cuda.synchronize()
        got = out.cpu().numpy()
        assert np.array_equal(got.view(np.uint8), want.view(np.uint8)), spec
        cu.cuModuleUnload(module)
