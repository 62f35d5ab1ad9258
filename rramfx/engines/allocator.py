"""How the processes that run rramfx's tasks allocate memory: freed blocks kept for the next allocation.

glibc's malloc gives a freed block back to the operating system when it was large (mapped on its own,
above the mmap threshold) or sits at the top of the heap (above the trim threshold). torch on the CPU
frees each layer's activations as soon as the next layer has read them, so every forward pass of a
batch maps, faults in and unmaps the same buffers again: about 400,000 page faults per evaluate cell of
the demo (8 chips of 500 images). `keep_freed_memory` sets both thresholds so that those blocks stay in
the process and are reused; the computation is the same, bit for bit. Measured in
benchmarks/README.md ("The allocator"). PyTorch's CPU performance guides reach the same end by
preloading jemalloc or tcmalloc, which this machine image does not have.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["keep_freed_memory"]

# glibc's mallopt parameters (malloc.h) and the values set: 32 MiB is the largest mmap threshold glibc
# takes on 64-bit machines; a block larger than that is still mapped and given back when freed.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20
_TRIM_THRESHOLD = 1 << 30
_MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")
_applied = False


def keep_freed_memory() -> bool:
    """Make this process's C allocator keep freed blocks below 32 MiB for reuse instead of returning
    them to the operating system; returns whether it is in effect.

    Every task run through `rramfx.engines.run_task` calls it: in the local and Ray workers, and in the
    calling process for the serial engine; so does the ``rramfx`` command. Evaluation on the CPU gets
    1.2-2x faster (benchmarks/README.md); the price is that the process keeps its peak heap instead of
    shrinking after it. Call it yourself to get the same in your own process (e.g. before
    `rramfx.monte_carlo`). A no-op (False) where the C library is
    not glibc, or where ``MALLOC_TRIM_THRESHOLD_``/``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TOP_PAD_`` are
    set: the user's own allocator settings win."""
    global _applied
    if _applied:
        return True
    if any(name in os.environ for name in _MALLOC_VARIABLES) or not _is_glibc():
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        _applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
    return _applied


def _is_glibc() -> bool:
    try:
        return os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError, AttributeError):  # not a POSIX system, or not glibc
        return False
