"""SQLite reads that queue for a reader thread go to it together, as one job.

Design note
-----------
Every SQLite read is a hand-off to a reader connection's thread and back: a wake of
that thread, then a wake of the event loop through its self-pipe for the answer, and
the thread's turn at the GIL beside the loop's thread. The 20 /sync requests woken by
one message read in the same turn of the loop: 20 hand-offs and 20 wake-ups back
(issue 15, fan-out).

A read that finds a reader idle (and none queued) runs at once, alone, as before: a
lone read waits for nothing. One that finds every reader busy queues; a reader that
finishes its job takes every queued read as its next job (as a commit group takes the
transactions queued behind it): their statements one after the other on its thread,
each answered with its own rows or its own error. 20 woken reads are then 4 jobs on 3
readers, not 20.

Each statement still runs alone on its connection in autocommit (its own read
snapshot, as before): a batch changes how statements reach the threads, never what
they read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from homeserver.storage.turn_batches import Futures, answer, fail

# (the function run on the reader's thread, its SQL, its arguments)
Read = tuple[Callable[[Any, str, Sequence[Any]], Any], str, Sequence[Any]]


class ReadBatches:
    """Reads over a queue of reader connections (aiosqlite), queued ones batched."""

    def __init__(self, readers: asyncio.Queue[Any]) -> None:
        self._readers = readers
        # Reads waiting for a reader (never while one is idle), with their futures.
        self._queued: list[Read] = []
        self._futs: Futures = []
        self._tasks: set[asyncio.Task[None]] = set()
        # How many jobs and statements went to the readers (tests read these).
        self.jobs = 0
        self.statements = 0

    async def read(
        self, fn: Callable[[Any, str, Sequence[Any]], Any], sql: str, args: Sequence[Any]
    ) -> Any:
        """``fn(conn, sql, args)`` on a reader's thread: at once when a reader is idle,
        else with the other reads queued for the next reader free."""
        if not self._queued and not self._readers.empty():
            conn = self._readers.get_nowait()
            try:
                self.jobs += 1
                self.statements += 1
                return await conn._execute(fn, conn, sql, args)
            finally:
                self._release(conn)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queued.append((fn, sql, args))
        self._futs.append(fut)
        return await fut

    def _release(self, conn: Any) -> None:
        """``conn`` is done with its job: it takes the queued reads, or goes idle."""
        if not self._queued:
            self._readers.put_nowait(conn)
            return
        reads, futs = self._queued, self._futs
        self._queued, self._futs = [], []
        # A task of its own: the reads' callers may be cancelled, their reads still run.
        task = asyncio.ensure_future(self._run_job(conn, reads, futs))
        self._tasks.add(task)  # held until done (the loop keeps only weak references)
        task.add_done_callback(self._tasks.discard)

    async def _run_job(self, conn: Any, reads: list[Read], futs: Futures) -> None:
        try:
            self.jobs += 1
            self.statements += len(reads)
            outcomes: list[tuple[bool, Any]] = await conn._execute(_run_reads, conn, reads)
        except BaseException as e:
            fail(futs, e)
            if not isinstance(e, Exception):
                raise
            return
        finally:
            self._release(conn)
        answer(futs, outcomes)


def _run_reads(conn: Any, reads: list[Read]) -> list[tuple[bool, Any]]:
    """On the reader's thread: each read in turn, answered with (True, result) or
    (False, its exception): one read's error is its own caller's, not the batch's."""
    out: list[tuple[bool, Any]] = []
    for fn, sql, args in reads:
        try:
            out.append((True, fn(conn, sql, args)))
        except Exception as e:
            out.append((False, e))
    return out
