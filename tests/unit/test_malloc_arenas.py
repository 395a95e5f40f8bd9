"""``homeserver.memory.limit_malloc_arenas`` (called by ``myelin run`` before any thread
starts) really caps glibc's arenas: threads that allocate share them instead of each
keeping an arena of its own. Checked in a fresh interpreter through ``malloc_info``."""

from __future__ import annotations

import ctypes
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import ctypes, sys, tempfile, threading
    from homeserver.memory import limit_malloc_arenas

    if sys.argv[1] == "limit":
        assert limit_malloc_arenas(1)

    def work():
        keep = [bytes(4096) for _ in range(2000)]  # malloc, not pymalloc: > 512 bytes
        del keep

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]
    with tempfile.NamedTemporaryFile(suffix=".xml") as out:
        f = libc.fopen(out.name.encode(), b"w")
        libc.malloc_info(0, f)
        libc.fclose(f)
        print(open(out.name).read().count("<heap nr="))
    """
)


def _glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return True


def arenas_after_threads(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip())


@pytest.mark.skipif(not _glibc(), reason="arenas are a glibc allocator feature")
def test_limit_caps_the_arenas_that_allocating_threads_create() -> None:
    assert arenas_after_threads("limit") == 1
    # Without the cap the same threads make arenas of their own (the reason for it).
    assert arenas_after_threads("default") > 1
