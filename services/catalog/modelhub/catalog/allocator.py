"""The catalog process's memory allocator settings (glibc), applied at start-up by `python -m modelhub.catalog`.

Why: every upload message arrives in a fresh multi-megabyte buffer. With glibc's defaults, freed buffers of that
size are handed back to the kernel (unmapped, or trimmed off the top of the heap) and the next message faults
fresh pages in again, which is much of an upload's system time. Keeping them costs at most TRIM_THRESHOLD bytes
of freed memory per allocator arena. Operators who set MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_
themselves keep their values (`allocator_tuning` = false turns this off); on another C library it does nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
from typing import Final

log = logging.getLogger(__name__)

MMAP_THRESHOLD: Final = 32 << 20
"""Allocations below this come from the heap (and are reused) instead of their own mapping."""
TRIM_THRESHOLD: Final = 128 << 20
"""Free memory at the top of a heap is returned to the kernel only beyond this."""
_M_TRIM_THRESHOLD: Final = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD: Final = -3
ENVIRONMENT: Final = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune_allocator() -> bool:
    """Keep freed upload buffers for reuse (see the module doc). True when the settings were applied."""
    if any(name in os.environ for name in ENVIRONMENT):
        return False  # the operator chose
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False  # not glibc
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    if not applied:
        log.warning("allocator settings not applied (mallopt refused them)")
    return applied
