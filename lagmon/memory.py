"""Give freed heap memory back to the kernel between steps (glibc's malloc_trim).

A sample or a report builds and drops tens of MB of Python objects. Small objects live in
CPython's own arenas, returned when empty; everything larger (dict and list tables, pickles,
SQLite pages) comes from malloc, whose freed chunks glibc keeps mapped. After a peak the
process would stay at its high-water mark until the next step reused it: trim() hands the free
pages back (madvise), so the resident size between steps is what the process really holds.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
_loaded = False


def trim() -> None:
    """malloc_trim(0) where glibc has it; nothing elsewhere. Costs well under a millisecond
    for a heap of tens of MB."""
    global _trim, _loaded
    if not _loaded:
        _loaded = True
        try:
            _trim = ctypes.CDLL(None).malloc_trim  # the C library the interpreter runs on
        except (OSError, AttributeError):
            _trim = None
    if _trim is not None:
        _trim(0)
