"""Shared inputs for the bit-exactness tests: params sets and float inputs that hit every branch."""

from __future__ import annotations

import numpy as np

from plugins.spec import pack_params


def params_sets() -> dict[str, np.ndarray]:
    """Representative params: 8-bit with both tails, no negative tail, 4-bit, awkward steps, and
    searched code splits (D, P, N) that fill the code range (-128 and 127 used, asymmetric tails)."""
    d8, d4 = 63, 3
    bp = np.float32(0.7371)
    return {
        "b8_two_tails": pack_params(
            bp,
            np.float32(bp / np.float32(d8)),
            np.float32((np.float32(9.25) - bp) / d8),
            np.float32((np.float32(3.5) - bp) / d8),
            d8,
        ),
        "b8_no_neg_tail": pack_params(1.0, np.float32(1.0) / np.float32(d8), 0.5, 0.0, d8),
        "b4": pack_params(0.3, np.float32(0.3) / np.float32(d4), np.float32(0.9) / np.float32(d4), 0.05, d4),
        "b8_pow2": pack_params(2.0, 0.03125, 0.25, 0.125, d8),
        "b8_split_full": pack_params(
            bp, np.float32(bp / np.float32(87)), np.float32((np.float32(9.25) - bp) / 40), 0.0625, 87, 40, 41
        ),
        "b8_split_wide_dense": pack_params(0.5, np.float32(0.5) / np.float32(126), 0.75, 0.25, 126, 1, 2),
        "b4_split": pack_params(
            0.3, np.float32(0.3) / np.float32(5), np.float32(0.7) / np.float32(2), 0.1, 5, 2, 3
        ),
        "b4_split_no_neg": pack_params(0.4, 0.1, 0.3, 0.0, 4, 3, 4),
    }


def code_range(params: np.ndarray) -> tuple[int, int]:
    """(lowest, highest) code the params can produce: -(D + N) (or -D without a tail), D + P."""
    d, p, n = int(params[4]), int(params[5]), int(params[6])
    return (-(d + n) if params[3] > 0 else -d), d + p


def edge_values(params: np.ndarray) -> np.ndarray:
    """float32 values at every boundary: exact .5 ties and grid points on all three grids, one ulp
    either side of +-bp, NaN, +-inf, out-of-range magnitudes, subnormals, float16 extremes."""
    bp, s_d, s_p, s_n, d, p, n = (np.float32(v) for v in params)
    widest = int(d) + int(max(p, n))
    k = np.arange(-widest - 3, widest + 4, dtype=np.float32)
    half = k + np.float32(0.5)
    ties = np.concatenate(
        [
            half * s_d,  # dense ties
            bp + half[half > 0] * s_p,  # positive-tail ties
            -(bp + half[half > 0] * s_n),  # negative-tail ties
            k * s_d,
            bp + k * s_p,
            -(bp + k * s_n),  # exact grid points
        ]
    ).astype(np.float32)
    below, above = np.nextafter(bp, np.float32(0)), np.nextafter(bp, np.float32(9))
    around_bp = np.array([below, bp, above, -below, -bp, -above], dtype=np.float32)
    special = np.array(
        [0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 3e38, -3e38, 1e-45, -1e-45, 65504.0, -65504.0],
        dtype=np.float32,
    )
    return np.concatenate([special, around_bp, ties]).astype(np.float32)


def float_inputs(params: np.ndarray, n_random: int = 20000, seed: int = 0) -> np.ndarray:
    """float32 values: random bulk and outliers, then every `edge_values` entry."""
    bp, s_p, p = np.float32(params[0]), np.float32(params[2]), np.float32(params[5])
    rng = np.random.default_rng(seed)
    bulk = (rng.standard_normal(n_random) * bp).astype(np.float32)
    outliers = (rng.standard_normal(2000) * (bp + p * s_p) * 2).astype(np.float32)
    return np.concatenate([bulk, outliers, edge_values(params)]).astype(np.float32)


def all_codes() -> np.ndarray:
    """Every int8 code, including the unused ones beyond the code range."""
    return np.arange(-128, 128, dtype=np.int16).astype(np.int8)


def shaped_codes(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random int8 codes of `shape`, starting with every code (the unused ones too) when there is room."""
    n = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    codes = rng.integers(-128, 128, size=n, dtype=np.int16).astype(np.int8)
    edge = np.tile(all_codes(), 1 + n // 256)[:n]
    codes[: min(n, 256)] = edge[: min(n, 256)]  # every code, the unused ones included, when n >= 256
    if n < 256:
        codes[:] = rng.choice(all_codes(), size=n)
    return codes.reshape(shape)


def shaped_floats(params: np.ndarray, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """float32 inputs of `shape`: `edge_values` first (as many as fit), then draws from `float_inputs`."""
    n = int(np.prod(shape))
    edge = edge_values(params)[:n]
    pool = float_inputs(params, n_random=max(n, 1000), seed=seed)
    rest = np.random.default_rng(seed).choice(pool, size=n - edge.size)
    return np.concatenate([edge, rest]).astype(np.float32).reshape(shape)
