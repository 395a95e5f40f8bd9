"""SQLite reads issued in the same turn of the event loop, one job per reader thread.

Design note
-----------
Every SQLite read is a hand-off to a reader connection's thread and back: a wake of
that thread, then a wake of the event loop through its self-pipe for the answer, and
the thread's turn at the GIL beside the loop's thread. The 20 /sync requests woken by
one message read in the same turn of the loop: 20 hand-offs and 20 wake-ups back. Here
the reads of a turn (``turn_batches.py``) are shared out among the idle readers, a
share each (their threads run beside each other), each share one job: its statements
one after the other, each answered with its own rows or its own error.

Each statement still runs alone on its connection in autocommit (its own read
snapshot, as before): a batch changes how statements reach the threads, never what
they read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from homeserver.storage.turn_batches import Futures, TurnBatches, answer, fail

# (the function run on the reader's thread, its SQL, its arguments)
Read = tuple[Callable[[Any, str, Sequence[Any]], Any], str, Sequence[Any]]


class ReadBatches:
    """Batches of reads over a queue of reader connections (aiosqlite)."""

    def __init__(self, readers: asyncio.Queue[Any]) -> None:
        self._readers = readers
        self._batches: TurnBatches[Read] = TurnBatches(self._run)
        # How many jobs and statements went to the readers (tests read these).
        self.jobs = 0
        self.statements = 0

    async def read(
        self, fn: Callable[[Any, str, Sequence[Any]], Any], sql: str, args: Sequence[Any]
    ) -> Any:
        """``fn(conn, sql, args)`` on a reader's thread, batched with this turn's reads."""
        return await self._batches.submit((fn, sql, args))

    async def _run(self, reads: list[Read], futs: Futures) -> None:
        """Share i is reads i, i + shares, ...: as many shares as idle readers, at most
        one per read."""
        shares = max(1, min(len(reads), self._readers.qsize()))
        if shares == 1:
            await self._run_share(reads, futs)
            return
        await asyncio.gather(
            *(self._run_share(reads[i::shares], futs[i::shares]) for i in range(shares))
        )

    async def _run_share(self, reads: list[Read], futs: Futures) -> None:
        try:
            conn = await self._readers.get()
            try:
                self.jobs += 1
                self.statements += len(reads)
                outcomes: list[tuple[bool, Any]] = await conn._execute(_run_reads, conn, reads)
            finally:
                self._readers.put_nowait(conn)
        except BaseException as e:
            fail(futs, e)
            if not isinstance(e, Exception):
                raise
            return
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
