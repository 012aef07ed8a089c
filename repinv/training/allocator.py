"""The C allocator's policy in a training process: keep freed memory mapped for reuse.

A training step allocates and frees the same megabyte-sized tensors every time (features, temporaries,
activations). glibc's malloc serves large blocks with fresh ``mmap`` calls and returns the free top of its heap to
the kernel, so those tensors keep coming back as new pages that fault on first touch: 100 to 1,000 page faults per
HOG call at 64 images of 64x64, and 10-15% of hog-64 training throughput on 2 CPU cores (docs/benchmarks.md,
"Training throughput"). Raising the two thresholds keeps the memory mapped; the peak resident size barely moves
(the process reaches that peak every step anyway).
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD"]

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

#: Blocks up to this size come from the heap instead of their own mmap; free memory up to twice it stays mapped.
MMAP_THRESHOLD = 64 << 20


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse rather than hand it back to the kernel.

    Process-wide, and only where the C library is glibc (elsewhere nothing changes). :func:`repinv.train` calls it.

    Returns:
        Whether the allocator took the settings.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):  # e.g. musl, which has no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # Setting a threshold turns off glibc's dynamic adjustment of both, so both are set.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD))
