"""Fixed work split of the fused CPU kernels (independent of the thread count, so sums are too)."""

from __future__ import annotations

# Values per parallel chunk: large enough that a thread's share of a feature map is a few chunks, small
# enough that 2-16 threads balance on IMDN's 0.4-1.6 M value maps.
CHUNK = 1 << 15
# Float64 accumulator lanes per sum inside a chunk (value i goes to lane i % LANES): a multiple of the
# vector width, small enough that 3 sums stay in the L1 cache.
LANES = 512
