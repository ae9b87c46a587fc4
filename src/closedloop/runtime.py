"""Process-wide settings the command line applies (a library import changes nothing).

Example
-------
>>> keep_freed_memory()   # glibc only; returns whether it applied
True
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory(threshold: int = 1 << 30) -> bool:
    """Let glibc serve and keep large blocks from the heap instead of fresh mmap pages.

    A training epoch allocates and frees buffers of several MB (rollout states, adjoints);
    by default glibc maps each one freshly and the first touch of every page faults (~10 % of
    an epoch measured on this project's benchmarks). Raising the mmap and trim thresholds
    makes freed buffers reusable. Returns False where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(
        mallopt(M_TRIM_THRESHOLD, threshold))
