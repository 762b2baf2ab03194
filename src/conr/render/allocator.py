"""Process-wide tuning of the C allocator for rendering on the CPU.

The shader's full-resolution tensors are tens to hundreds of megabytes. glibc serves every such
allocation with a fresh mmap and unmaps it on free, so each frame touches gigabytes of new pages:
on a 2-core machine the page faults alone took 20-30 % of the render time. Keeping large blocks in
the heap, and not returning freed memory to the system, lets later frames reuse the same pages.
It is a process-wide choice, so the CLI makes it; library users may call it themselves.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc reuse freed large blocks instead of unmapping them; True if applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if os.environ.get("CONR_NO_MALLOPT"):
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
