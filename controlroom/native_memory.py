"""Keeps the API's native heaps from holding freed memory (glibc malloc, Arrow's mimalloc pool).

Measured (README Performance, "API memory"): the API's private memory grew while the Python heap (tracemalloc)
and chDB's own allocator (jemalloc) stayed flat. The growth was glibc malloc keeping freed memory: Python objects
over 512 bytes and Arrow/chDB hand-over buffers come from glibc, spread over one arena per thread (the sink's
event loop, asyncio.to_thread workers and chDB's threads calling into Python), and glibc's sliding mmap threshold
moves big buffers from mmap (returned on free) into those arenas (kept, fragmented). One malloc_trim(0) on the live
process returned 100 MB. So: fewer arenas and a fixed mmap threshold at startup, and a periodic trim. chDB's own
jemalloc kept up to 110 MB of freed pages too (resident 206 MB, active 94): the embedded API purges it as well
(controlroom/warehouse.py release_engine_memory).
Linux with glibc only; elsewhere (musl, macOS) every call here is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

import pyarrow as pa

# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENA_MAX = 2  # glibc's default is 8 per core: each arena keeps its own freed memory
MMAP_THRESHOLD = 256 * 1024  # fixed: buffers this big are mmap'd and go back to the system when freed
TRIM_THRESHOLD = 1024 * 1024
TRIM_EVERY_S = 30.0


def _glibc() -> Any | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_LIBC = _glibc()


def tune_malloc() -> bool:
    """Fewer arenas and a fixed mmap threshold; call early, before the threads that would make more arenas."""
    if _LIBC is None:
        return False
    ok = [_LIBC.mallopt(param, value) for param, value in
          ((M_ARENA_MAX, ARENA_MAX), (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD))]
    return all(ok)


def release_free_memory() -> None:
    """Gives freed memory back to the system: every glibc arena, and Arrow's pool."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
    with contextlib.suppress(Exception):  # an old pyarrow or a pool without the call: nothing to release
        pa.default_memory_pool().release_unused()


async def trim_periodically(stop: asyncio.Event, also: Callable[[], None] | None = None,
                            every_s: float = TRIM_EVERY_S) -> None:
    """release_free_memory (and `also`: chDB's purge) every `every_s` until `stop`, in a thread: a trim walks
    every arena."""
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        if stop.is_set():
            break
        await asyncio.to_thread(release_free_memory)
        if also is not None:
            await asyncio.to_thread(also)
