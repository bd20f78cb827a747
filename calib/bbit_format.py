"""The optimized one-code (`b-bit`) dual-region format: code split and breakpoint searched per layer.

The `b-bit` budget stores one signed b-bit code per value (docs/dual_region_codes.md): D dense codes
each side of zero with step s_d = bp / D, P positive tail codes with step s_p = (u - bp) / P and N
negative tail codes with step s_n = (-l - bp) / N (D + P <= 2^(b-1) - 1, D + N <= 2^(b-1)). Schema-1
recipes fix D = P = N = 2^(b-2) - 1 and take bp from a percentile, which wastes codes: at 4 bits that
grid has 13 levels where a uniform grid has 16.

`search_bbit_format` picks (D, P, N, bp, u, l) with the lowest expected squared error over a signed
histogram of the calibration activations (values represented by their bin centres). The error
separates by region once D and bp are fixed: the dense error depends on (D, bp) only, the positive tail
error on (bp, P, s_p) only, the negative one on (bp, N, s_n) only, so each tail step is minimised on its
own. The candidates always include the symmetric uniform grid q * s, q in [-2^(b-1), 2^(b-1) - 1] (a
special case of the format: bp = D s, s_p = s_n = s) and schema 1's fixed split: the chosen format is
never worse than either on this objective.

By default (`clip=False`) every candidate covers the whole observed range, as the paper's bounds
(EMA'd min / max) do: the tails end at the largest magnitude seen, and the uniform candidate is the
minmax grid. Squared error alone prefers clipping the rare outliers, which measured worse in PSNR at
W8A8 (results/ptq/ANALYSIS.md); `clip=True` searches clipped tails and uniform scales too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from calib.observers import AbsHistogram
from drq.recipe import default_dense_limit

BP_CANDIDATES = 96
"""Breakpoints tried per dense limit: a linear grid over (0, max |x|], plus the percentile one."""
TAIL_CANDIDATES = 24
"""Tail steps tried per (breakpoint, tail codes): clip points on a linear grid up to the tail's max."""
SEARCH_BINS = 1024
"""Histograms are merged down to this many bins per sign before the search (cost, not accuracy)."""
TAIL_BINS = 256
"""... and to this many for the tail errors, whose steps are coarse."""


CLIP_MAX_BITS = 4
"""Runs whose activation target is at most this many bits search clipped tails too (`clips_tails`)."""


def clips_tails(a_bits: int) -> bool:
    """Whether a run at `a_bits` activation bits lets the search clip outliers (every layer of it).

    Measured on IMDN x4 Set5 (drq, 8 calibration images, no finetuning): at W4A4 clipping gave 28.80
    dB against 28.53 without; at W8A8 32.04 against 32.10. Other widths follow the 8-bit rule
    (unmeasured).
    """
    return a_bits <= CLIP_MAX_BITS


class SignedHistogram:
    """Histograms of the positive values and of the magnitudes of the negative values of one input."""

    def __init__(self) -> None:
        self.pos = AbsHistogram()
        self.neg = AbsHistogram()

    def collect(self, x: torch.Tensor) -> None:
        x = x.detach().float()
        # Zeros land in bin 0 of both sides; their error is 0 on every candidate, so the count is moot.
        self.pos.collect(torch.clamp(x, min=0.0))
        self.neg.collect(torch.clamp(-x, min=0.0))


@dataclass(frozen=True)
class BBitFormat:
    """A searched b-bit format: bounds, breakpoint, code split and its histogram error."""

    lower: float
    breakpoint: float
    upper: float
    dense_limit: int
    pos_tail_codes: int
    neg_tail_codes: int
    error: float
    uniform_error: float  # the best symmetric uniform grid on the same histogram
    default_error: float  # schema 1's split D = P = N = 2^(b-2)-1 with the percentile breakpoint

    @property
    def code_split(self) -> tuple[int, int, int]:
        return (self.dense_limit, self.pos_tail_codes, self.neg_tail_codes)


@dataclass(frozen=True)
class _Side:
    """Bin centres and counts of one sign (magnitudes), fine and coarse, and its largest magnitude."""

    centres: np.ndarray
    counts: np.ndarray
    tail_centres: np.ndarray
    tail_counts: np.ndarray
    amax: float


def _merged(hist: AbsHistogram, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """(centres, counts) of the occupied prefix of `hist` merged to at most `bins` bins."""
    if hist.width == 0.0 or hist.counts.sum() == 0:
        return np.zeros(1), np.zeros(1)
    last = int(np.nonzero(hist.counts)[0][-1]) + 1
    factor = max(1, -(-last // bins))
    counts = np.concatenate([hist.counts[:last], np.zeros((-last) % factor)]).reshape(-1, factor).sum(axis=1)
    width = hist.width * factor
    return (np.arange(counts.size) + 0.5) * width, counts


def _side(hist: AbsHistogram) -> _Side:
    centres, counts = _merged(hist, SEARCH_BINS)
    tail_centres, tail_counts = _merged(hist, TAIL_BINS)
    amax = float(centres[-1] + (centres[-1] - centres[-2] if centres.size > 1 else 0.0) / 2)
    return _Side(centres, counts, tail_centres, tail_counts, amax if counts.sum() > 0 else 0.0)


def _dense_error(side: _Side, bps: np.ndarray, d: int) -> np.ndarray:
    """Squared error of the values |x| <= bp of one side on the dense grid, per breakpoint."""
    c, n = side.centres[None, :], side.counts[None, :]
    step = bps[:, None] / d
    err = (c - np.rint(c / step) * step) ** 2 * n
    return np.where(c <= bps[:, None], err, 0.0).sum(axis=1)


def _tail_error(
    side: _Side, bps: np.ndarray, codes: int, extra_steps: np.ndarray, clip: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(lowest squared error, its step) of the values beyond bp on a tail of `codes` codes, per bp.

    Candidate steps with `clip`: clip points bp + k (amax - bp) / TAIL_CANDIDATES, k = 1..TAIL_CANDIDATES,
    plus `extra_steps` (one per breakpoint: the dense step, which continues the uniform grid). Without:
    only the step whose last code reaches the largest magnitude seen (no value is clipped).
    """
    c, n = side.tail_centres[None, None, :], side.tail_counts[None, None, :]
    span = np.maximum(side.amax - bps, 0.0)[:, None]
    if clip:
        fractions = np.arange(1, TAIL_CANDIDATES + 1)[None, :] / TAIL_CANDIDATES
        steps = np.concatenate([span * fractions / codes, extra_steps[:, None]], axis=1)
    else:
        steps = span / codes
    steps = np.maximum(steps, np.finfo(np.float32).tiny)[:, :, None]
    anchor = bps[:, None, None]
    k = np.clip(np.rint((c - anchor) / steps), 0, codes)
    err = np.where(c > anchor, (c - (anchor + k * steps)) ** 2 * n, 0.0).sum(axis=2)
    best = err.argmin(axis=1)
    rows = np.arange(bps.size)
    return err[rows, best], steps[rows, best, 0]


def _no_tail_error(side: _Side, bps: np.ndarray) -> np.ndarray:
    """Squared error of the values beyond bp when they all decode as bp (no tail: s_n = 0)."""
    c, n = side.tail_centres[None, :], side.tail_counts[None, :]
    return np.where(c > bps[:, None], (c - bps[:, None]) ** 2 * n, 0.0).sum(axis=1)


def _uniform_error(pos: _Side, neg: _Side, scales: np.ndarray, bits: int) -> np.ndarray:
    """Squared error of the symmetric uniform grid q * s, q in [-2^(b-1), 2^(b-1) - 1], per scale."""
    top = 2 ** (bits - 1)
    s = scales[:, None]
    err_p = (pos.centres - np.clip(np.rint(pos.centres / s), 0, top - 1) * s) ** 2 * pos.counts
    err_n = (neg.centres - np.clip(np.rint(neg.centres / s), 0, top) * s) ** 2 * neg.counts
    return err_p.sum(axis=1) + err_n.sum(axis=1)


def _fixed_tail_error(side: _Side, bp: float, codes: int, step: float) -> float:
    """Squared error of the values beyond bp on a tail with a given step (0: no tail)."""
    c, n = side.tail_centres, side.tail_counts
    k = np.clip(np.rint((c - bp) / step), 0, codes) if step > 0 else np.zeros_like(c)
    return float(np.where(c > bp, (c - (bp + k * step)) ** 2 * n, 0.0).sum())


def _splits(bits: int) -> list[tuple[int, int, int]]:
    """Code splits (D, P, N) tried: every D with tails filling the code range, and schema 1's split.

    At 8 bits every other D (63 of 126): neighbouring dense limits differ by under 2 % in step.
    """
    top = 2 ** (bits - 1)
    stride = 2 if bits >= 7 else 1
    d0 = default_dense_limit(bits)
    full = [(d, top - 1 - d, top - d) for d in range(1, top - 1, stride)]
    return [*full, (d0, d0, d0)]


@dataclass(frozen=True)
class _Candidate:
    error: float
    split: tuple[int, int, int]
    bp: float
    s_p: float
    s_n: float


def _best_for_split(
    pos: _Side, neg: _Side, bps: np.ndarray, split: tuple[int, int, int], clip: bool
) -> _Candidate:
    d, p, n = split
    dense = _dense_error(pos, bps, d) + _dense_error(neg, bps, d)
    err_p, s_p = _tail_error(pos, bps, p, bps / d, clip)
    err_n, s_n = _tail_error(neg, bps, n, bps / d, clip)
    no_tail = _no_tail_error(neg, bps)
    if not clip:  # dropping the negative tail clips every value below -bp
        no_tail = np.where(neg.amax > bps, np.inf, no_tail)
    s_n = np.where(no_tail <= err_n, 0.0, s_n)
    total = dense + err_p + np.minimum(err_n, no_tail)
    i = int(total.argmin())
    return _Candidate(float(total[i]), split, float(bps[i]), float(s_p[i]), float(s_n[i]))


def _uniform_candidate(pos: _Side, neg: _Side, bits: int, d: int, clip: bool) -> _Candidate:
    """The best symmetric uniform grid (with `clip`; else the one reaching max |x|, i.e. minmax's),
    written as the format with dense limit `d`."""
    top = 2 ** (bits - 1)
    span = max(pos.amax, neg.amax)
    scales = span * (np.arange(1, 129) / 128 if clip else np.ones(1)) / (top - 1)
    errors = _uniform_error(pos, neg, scales, bits)
    i = int(errors.argmin())
    s = float(scales[i])
    return _Candidate(float(errors[i]), (d, top - 1 - d, top - d), d * s, s, s)


def _default_error(pos: _Side, neg: _Side, bits: int, lower: float, bp: float, upper: float) -> float:
    """Error of schema 1's format: D = P = N = 2^(b-2)-1 and the given (percentile) bounds."""
    d0 = default_dense_limit(bits)
    bps = np.array([bp])
    dense = float((_dense_error(pos, bps, d0) + _dense_error(neg, bps, d0))[0])
    s_n = (-lower - bp) / d0 if -lower > bp else 0.0
    return dense + _fixed_tail_error(pos, bp, d0, (upper - bp) / d0) + _fixed_tail_error(neg, bp, d0, s_n)


def search_bbit_format(
    hist: SignedHistogram, bits: int, lower: float, breakpoint: float, upper: float, clip: bool = False
) -> BBitFormat:
    """The b-bit format with the lowest histogram error (see the module docstring).

    `clip` False (default): every candidate reaches the largest magnitude seen on each side, as the
    paper's bounds do (min / max), so outliers are never clipped and the search only places the
    breakpoint and splits the codes; True also tries clipping the tails (lower squared error, but
    measured worse in PSNR at W8A8, see results/ptq/ANALYSIS.md).

    `lower`, `breakpoint`, `upper` are the paper's initialisation (EMA'd min / max, percentile bp): its
    breakpoint is a candidate of every split, and schema 1's format with exactly these bounds is a
    candidate as a whole, so the result is never worse than today's on the histogram. Ties keep the
    earlier candidate: the searched dual-region formats, then uniform, then schema 1's.

    Raises:
        ValueError: the histogram saw no data.
    """
    pos, neg = _side(hist.pos), _side(hist.neg)
    span = max(pos.amax, neg.amax)
    if span <= 0.0:
        raise ValueError("histogram saw only zeros")
    bps = np.concatenate([[breakpoint], span * np.arange(1, BP_CANDIDATES + 1) / (BP_CANDIDATES + 1)])
    candidates = (_best_for_split(pos, neg, bps, split, clip) for split in _splits(bits))
    best = min(candidates, key=lambda c: c.error)
    uniform = _uniform_candidate(pos, neg, bits, best.split[0], clip)
    default = _default_error(pos, neg, bits, lower, breakpoint, upper)
    chosen = best if best.error <= uniform.error else uniform
    if default < chosen.error:
        d0 = default_dense_limit(bits)
        return BBitFormat(lower, breakpoint, upper, d0, d0, d0, default, uniform.error, default)
    d, p, n = chosen.split
    new_upper = chosen.bp + p * chosen.s_p
    new_lower = -(chosen.bp + n * chosen.s_n) if chosen.s_n > 0 else -chosen.bp
    return BBitFormat(new_lower, chosen.bp, new_upper, d, p, n, chosen.error, uniform.error, default)
