"""Fixed work split of the fused CPU kernels (independent of the thread count, so sums are too)."""

from __future__ import annotations

# Values per parallel chunk: large enough that a thread's share of a feature map is a few chunks, small
# enough that 2-16 threads balance on IMDN's 0.4-1.6 M value maps.
CHUNK = 1 << 15
# Accumulator lanes per sum inside a chunk (value i goes to lane i % LANES): a multiple of the vector
# width, small enough that the sums' lanes stay in the L1 cache.
LANES = 512
# Blocks of LANES values a float32 lane sums before it is added into its float64 lane (16 float32
# additions: relative error ~1e-7, what the float32 products themselves carry).
FLUSH = 16
