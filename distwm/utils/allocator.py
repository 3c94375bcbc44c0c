"""Keep freed memory in the process instead of returning it to the OS (glibc ``mallopt``).

A learner's update allocates and frees the same large tensors every step (an imagination's
activations: tens of MB at XS). glibc serves blocks above its mmap threshold with fresh
``mmap`` pages and trims the top of its heap when it frees, so every update touches new pages
again: at XS on a 2-core VM, ~45k page faults and ~0.4 s of system time per update.
:func:`keep_freed_memory` raises the mmap threshold to glibc's maximum (32 MiB) and stops the
trimming, so after the first update the same memory is reused. The process then keeps its
peak heap; that is what a learner process wants (it allocates the same peak every step).

It changes the whole process, so it is called by the code that owns a learner process (the
first update of a Dreamer learner, ``DreamerConfig.keep_freed_memory``), never at import or
construction. Elsewhere than glibc (macOS, musl) it does nothing and says so in its result.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

__all__ = ["keep_freed_memory", "MMAP_THRESHOLD"]

_log = logging.getLogger(__name__)

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
#: glibc's largest mmap threshold on 64-bit (HEAP_MAX_SIZE / 2): larger blocks are always mmapped
MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 2**31 - 1  # an int; glibc never trims below it
_TOP_PAD = 64 * 1024 * 1024  # grow the heap in large steps (fewer brk calls)

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Apply the settings above once per process; ``True`` when they are in effect."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        _log.debug("keep_freed_memory: not Linux (%s), nothing to do", sys.platform)
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        _log.debug("keep_freed_memory: no glibc mallopt here, nothing to do")
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = all(mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
        (_M_TOP_PAD, _TOP_PAD)))
    if not ok:
        _log.warning("keep_freed_memory: glibc refused a mallopt setting; freed memory may go "
                     "back to the OS as before")
    _applied = ok
    return ok
