"""Process-wide allocator setting for long torch CPU runs (called by the command layer only).

PTQ allocates and frees tensors of a few MB thousands of times per step. glibc returns such blocks to the
kernel (mmap / heap trim) and every reuse page-faults them in again: on IMDN that made the split
quantizer's backward ~3x slower than its arithmetic (results/ptq_speed/README.md). Raising glibc's mmap
and trim thresholds keeps freed blocks in the heap for reuse.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks up to 32 MiB (every feature map of the zoo's SR nets at calibration crop sizes) come from the heap;
# up to 256 MiB of free heap top is kept rather than trimmed.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Set glibc's mmap / trim thresholds (see the module docstring); False where libc is not glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
