"""glibc allocator settings for the server process, applied once at start.

Every thread that allocates gets a malloc arena of its own (up to 8 per core):
the event loop, each SQLite connection's aiosqlite thread, the default executor's
threads, the password-hash pool. Each arena keeps the memory its thread freed
for that thread's later use, so a busy reader connection's arena stays at its
high-water mark while the event loop's grows beside it. Two arenas for the
whole process measured 1-4 MiB less resident memory per benchmark workload
(benchmarks/README.md, 2026-12-06) at no measurable cost in speed: the threads
that allocate much (SQLite readers) spend their time in SQLite, not in malloc.

A no-op where the C library is not glibc.
"""

from __future__ import annotations

import ctypes

# glibc's mallopt parameter number for the most arenas (malloc.h M_ARENA_MAX).
_M_ARENA_MAX = -8
DEFAULT_ARENAS = 2


def limit_malloc_arenas(arenas: int = DEFAULT_ARENAS) -> bool:
    """Cap the malloc arenas of this process; True if the C library took the setting.

    Call it before threads start: arenas already made stay.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_ARENA_MAX, arenas))
