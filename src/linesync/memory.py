"""Giving memory back to the system after a burst of work.

CPython frees objects into the C allocator, which keeps the freed pages for
later: after a first sync of a big folder a long-running watcher or server
would sit at its peak size. glibc's ``malloc_trim`` returns what is free;
elsewhere (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

_trim: Callable[[int], int] | None = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
except (OSError, AttributeError):
    _trim = None


def give_back() -> None:
    """Hand the allocator's free pages to the system (a few milliseconds)."""
    if _trim is not None:
        _trim(0)
