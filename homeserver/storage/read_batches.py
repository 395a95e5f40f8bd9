"""SQLite reads issued in the same turn of the event loop, run as one job per reader.

Design note
-----------
Every SQLite read is a hand-off to a reader connection's thread and back: a wake of
that thread, then a wake of the event loop through its self-pipe for the answer, and
the thread's fight for the GIL with the loop's thread. One message to a room of 20
long-polling members wakes 20 ``/sync`` requests in the same turn of the loop, and each
reads its heads and memberships (one statement): 20 hand-offs and 20 wake-ups back,
then as many again for the 20 long-polls the clients start next (issue 15, fan-out).

The first read of a turn leads a batch: it yields once (``asyncio.sleep(0)``), so that
every other task ready in that turn may add its read, then runs the batch on a reader,
a share per idle reader (the others' threads take their shares beside it), each share
one job: its statements one after the other, each answered with its rows or its own
error. A lone read costs one extra turn of the loop and nothing more.

Each statement still runs alone on its connection in autocommit (its own read
snapshot, as before): a batch changes how statements reach the threads, never what
they read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

# (the function run on the reader's thread, its SQL, its arguments)
Read = tuple[Callable[[Any, str, Sequence[Any]], Any], str, Sequence[Any]]


class _Batch:
    def __init__(self, first: Read, fut: asyncio.Future[Any]) -> None:
        self.reads: list[Read] = [first]
        self.futs: list[asyncio.Future[Any]] = [fut]


class ReadBatches:
    """Batches of reads over a queue of reader connections (aiosqlite)."""

    def __init__(self, readers: asyncio.Queue[Any]) -> None:
        self._readers = readers
        self._open: _Batch | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # How many jobs and statements went to the readers (tests read these).
        self.jobs = 0
        self.statements = 0

    async def read(
        self, fn: Callable[[Any, str, Sequence[Any]], Any], sql: str, args: Sequence[Any]
    ) -> Any:
        """``fn(conn, sql, args)`` on a reader's thread, batched with this turn's reads."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        batch = self._open
        if batch is not None:
            batch.reads.append((fn, sql, args))
            batch.futs.append(fut)
            return await fut
        batch = self._open = _Batch((fn, sql, args), fut)
        try:
            await asyncio.sleep(0)  # the other reads of this turn join the batch
        finally:
            self._open = None
            if len(batch.reads) > 1:
                # Also when this leader is cancelled: the others' reads still run.
                self._start(batch)
        if len(batch.reads) == 1:
            # Alone: run here, no task (a cancelled caller's read is its own).
            await self._run_share(batch.reads, batch.futs)
        return await fut

    def _start(self, batch: _Batch) -> None:
        """One job per share: share i is reads i, i + shares, ... (as many shares as
        idle readers, at most one per read). Tasks of their own: a cancelled caller
        leaves the others' reads running."""
        reads, futs = batch.reads, batch.futs
        shares = max(1, min(len(reads), self._readers.qsize()))
        for i in range(shares):
            task = asyncio.ensure_future(self._run_share(reads[i::shares], futs[i::shares]))
            self._tasks.add(task)  # held until done (the loop keeps only weak references)
            task.add_done_callback(self._tasks.discard)

    async def _run_share(self, reads: list[Read], futs: list[asyncio.Future[Any]]) -> None:
        try:
            conn = await self._readers.get()
            try:
                self.jobs += 1
                self.statements += len(reads)
                outcomes: list[tuple[bool, Any]] = await conn._execute(_run_reads, conn, reads)
            finally:
                self._readers.put_nowait(conn)
        except BaseException as e:
            _fail(futs, e)
            if not isinstance(e, Exception):
                raise
            return
        _answer(futs, outcomes)


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


def _answer(futs: list[asyncio.Future[Any]], outcomes: list[tuple[bool, Any]]) -> None:
    for fut, (ok, value) in zip(futs, outcomes, strict=True):
        if fut.done():
            continue  # its caller was cancelled
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _fail(futs: list[asyncio.Future[Any]], e: BaseException) -> None:
    for fut in futs:
        if fut.done():
            continue
        if isinstance(e, asyncio.CancelledError):
            fut.cancel()
        else:
            fut.set_exception(e)
