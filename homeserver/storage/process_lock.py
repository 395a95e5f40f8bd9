"""One serving process per database: a lock held for the process's lifetime.

Design note
-----------
The main process sends the federation outbox and runs the background jobs;
two of them on one database would each do it (and, without the signal bus,
each keep caches the other cannot invalidate), so the second one refuses to
start. Worker processes (``myelin run --worker``, PostgreSQL only) take no
lock: they run beside the main one (``homeserver.app.start_worker``).

PostgreSQL
    A session-level advisory lock (``pg_try_advisory_lock``) taken on a
    connection of its own, outside the pool, kept open until the server
    stops. Advisory locks are per database, and PostgreSQL drops them when
    the session ends, so a process killed with SIGKILL frees the database.
    The same is true when *that connection* ends (PostgreSQL restarted, the
    backend was terminated): ``watch`` checks it every few seconds and takes
    the lock again on a new connection; if another process took it
    meanwhile, the lock is lost for good and the server must stop.
SQLite
    ``flock`` (exclusive, non-blocking) on ``DATABASE.lock`` beside the
    database file. The kernel drops it when the holding process dies, so a
    stale lock file never blocks a restart; the file holds the holder's pid
    only to make the error message useful.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable
from typing import Any, Final

from homeserver.storage.database import DatabaseUnavailable, sqlite_path

# The advisory lock key: "myelin" as a big-endian int, fixed for every version.
ADVISORY_KEY: Final = int.from_bytes(b"myelin", "big")
# How often the PostgreSQL lock's connection is checked (seconds).
WATCH_INTERVAL_S: Final = 5.0

log = logging.getLogger("myelin.storage")


class DatabaseInUse(DatabaseUnavailable):
    """Another Myelin process is serving this database."""


class ProcessLock:
    """Held until ``release``; see the module note for each engine."""

    def __init__(self, fd: int | None = None, conn: Any = None, url: str = "") -> None:
        self._fd = fd
        self._conn = conn
        self._url = url

    async def watch(
        self, on_lost: Callable[[], None], interval_s: float = WATCH_INTERVAL_S
    ) -> None:
        """PostgreSQL: keep the lock while the process runs (see the module note);
        ``on_lost`` is called once if another process took it. SQLite: nothing to do."""
        if self._conn is None:
            return
        while self._conn is not None:
            await asyncio.sleep(interval_s)
            if self._conn is None:
                return
            try:
                await self._conn.fetchval("SELECT 1")
                continue
            except Exception:
                log.warning("the connection holding the database lock was lost; taking it again")
            old, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                old.terminate()
            try:
                again = await _lock_postgres(self._url)
            except DatabaseInUse:
                log.critical("another Myelin process took the database lock: stopping")
                on_lost()
                return
            except DatabaseUnavailable:
                self._conn = old  # still unreachable: try again at the next tick
                continue
            self._conn = again._conn
            again._conn = None

    async def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close()


_ADVICE = (
    "only one main `myelin run` may use a database (more processes over PostgreSQL run"
    " as workers: `myelin run --worker NAME`); stop the other one first"
)


def _lock_sqlite(path: str) -> ProcessLock:
    lock_path = path + ".lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise DatabaseInUse(
            f"the SQLite database {path} is in use by another Myelin process"
            f" (pid {holder}, lock file {lock_path}): {_ADVICE}"
        ) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return ProcessLock(fd=fd)


async def _lock_postgres(url: str) -> ProcessLock:
    import asyncpg

    try:
        conn = await asyncpg.connect(url)
    except (TimeoutError, OSError) as e:
        raise DatabaseUnavailable(f"cannot reach PostgreSQL: {e}") from None
    except Exception as e:  # asyncpg raises its own hierarchy for auth/db errors
        raise DatabaseUnavailable(f"cannot open PostgreSQL database: {e}") from None
    try:
        got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_KEY)
    except BaseException:
        await conn.close()
        raise
    if not got:
        await conn.close()
        raise DatabaseInUse(
            "the PostgreSQL database is in use by another Myelin process"
            f" (advisory lock {ADVISORY_KEY} is held): {_ADVICE}"
        )
    return ProcessLock(conn=conn, url=url)


async def acquire_process_lock(url: str) -> ProcessLock:
    """Take the database's process lock, or raise ``DatabaseInUse`` naming why."""
    path = sqlite_path(url)
    if path is None:
        return await _lock_postgres(url)
    if path == ":memory:":
        return ProcessLock()
    return _lock_sqlite(path)
