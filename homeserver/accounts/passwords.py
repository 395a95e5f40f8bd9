"""Password hashing with bounded memory.

argon2id is memory-hard on purpose: every hash holds ``memory_cost_kib`` of
RAM for its duration, and the allocator tends to keep what it was given.
Run through ``asyncio.to_thread`` (the default executor, up to 32 threads
on a small machine) sixteen registrations at once meant sixteen hashes of
64 MiB each, and a server that idles at 60 MiB peaked above 300 MiB.

So hashing runs on a small thread pool of its own with ``max_concurrent``
workers: at most that many hashes are in memory at once, the rest wait in
the pool's queue (the event loop keeps serving meanwhile). The defaults are
the least memory of OWASP's equivalent argon2id profiles, m=7 MiB, t=5, p=1.

Stored hashes carry their own parameters, so hashes made under earlier
settings keep verifying; ``needs_rehash`` says when a successful login
should store a fresh hash under the current ones.

Giving the memory back: glibc serves a block above its mmap threshold from a
mapping of its own, unmapped on free, but raises that threshold (up to
32 MiB) each time such a block is freed, so from the second hash on a 7 MiB
block comes from the heap and stays there. A fixed threshold (which turns
the raising off) keeps every hash's memory returned to the system.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from homeserver.config import PasswordHashingConfig

# glibc's mallopt parameter number, and the fixed threshold: blocks of 4 MiB and more get
# mappings of their own (argon2's are 7 MiB by default; Python objects rarely come near).
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024


def _unmap_large_blocks_on_free() -> None:
    """Fix glibc's mmap threshold (see the module note); a no-op on other C libraries."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)


class PasswordHashing:
    """argon2id hashing and checking on a bounded pool of threads."""

    def __init__(self, settings: PasswordHashingConfig) -> None:
        self.settings = settings
        _unmap_large_blocks_on_free()
        self._hasher = PasswordHasher(
            time_cost=settings.time_cost,
            memory_cost=settings.memory_cost_kib,
            parallelism=settings.parallelism,
        )
        self._pool = ThreadPoolExecutor(
            max_workers=settings.max_concurrent, thread_name_prefix="password-hash"
        )
        # How many hashes run right now, and the most that ever ran at once: the
        # bound is a property of the pool, these make it observable (tests, metrics).
        self._count_lock = threading.Lock()
        self.running = 0
        self.peak_running = 0

    def _enter(self) -> None:
        with self._count_lock:
            self.running += 1
            self.peak_running = max(self.peak_running, self.running)

    def _leave(self) -> None:
        with self._count_lock:
            self.running -= 1

    def _hash_blocking(self, password: str) -> str:
        self._enter()
        try:
            return self._hasher.hash(password)
        finally:
            self._leave()

    def _verify_blocking(self, password_hash: str, password: str) -> bool:
        self._enter()
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        finally:
            self._leave()

    async def hash(self, password: str) -> str:
        """A fresh argon2id hash under the configured parameters."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._hash_blocking, password)

    async def check(self, password: str, password_hash: str | None) -> bool:
        """Constant-time check; an account without a password always fails."""
        loop = asyncio.get_running_loop()
        if not password_hash:
            # Spend comparable time so a missing account is not revealed by timing.
            await loop.run_in_executor(self._pool, self._hash_blocking, password)
            return False
        return await loop.run_in_executor(
            self._pool, self._verify_blocking, password_hash, password
        )

    def needs_rehash(self, password_hash: str) -> bool:
        """Whether a (verified) stored hash was made under other parameters."""
        try:
            return bool(self._hasher.check_needs_rehash(password_hash))
        except (InvalidHashError, ValueError):
            return True

    def close(self) -> None:
        """Let running hashes finish; no new ones start."""
        self._pool.shutdown(wait=False, cancel_futures=True)
