"""Calls made in the same turn of the event loop, run together.

Design note
-----------
One message to a room of 20 long-polling members wakes 20 ``/sync`` requests in the
same turn of the loop (``sync/notifier.py``), and each then reads the database with the
same statement: 20 round trips on PostgreSQL (issue 15, fan-out). ``TurnBatches.submit``
gathers such calls: the first of a turn leads a batch, yields once
(``asyncio.sleep(0)``) so that every other task ready in that turn may join it, and
then the batch's runner answers every call of it at once (``set_statement.py``: one
statement on PostgreSQL). A lone call costs one extra turn of the loop and runs in its
caller's task. (SQLite's reads batch without waiting: ``read_batches.py``.)

A batch of more than one runs in a task of its own: a caller cancelled meanwhile (a
client gone) leaves the others' calls running. A runner answers every future it is
given, with a result or an exception, and skips those already cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Futures = list["asyncio.Future[Any]"]


class TurnBatches(Generic[T]):
    def __init__(self, run: Callable[[list[T], Futures], Awaitable[None]]) -> None:
        self._run = run
        self._open: tuple[list[T], Futures] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: T) -> Any:
        """``item``'s answer, run with the other calls of this turn."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        batch = self._open
        if batch is not None:
            batch[0].append(item)
            batch[1].append(fut)
            return await fut
        items, futs = self._open = ([item], [fut])
        try:
            await asyncio.sleep(0)  # the other calls of this turn join the batch
        finally:
            self._open = None
            if len(items) > 1:
                # Also when this leader is cancelled: the others' calls still run.
                task = asyncio.ensure_future(self._run(items, futs))
                self._tasks.add(task)  # held until done (the loop keeps weak references)
                task.add_done_callback(self._tasks.discard)
        if len(items) == 1:
            await self._run(items, futs)
        return await fut


def answer(futs: Futures, outcomes: list[tuple[bool, Any]]) -> None:
    """Each future its (ok, result or exception), unless its caller was cancelled."""
    for fut, (ok, value) in zip(futs, outcomes, strict=True):
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def fail(futs: Futures, e: BaseException) -> None:
    """Every future the batch's error (a cancellation cancels them)."""
    for fut in futs:
        if fut.done():
            continue
        if isinstance(e, asyncio.CancelledError):
            fut.cancel()
        else:
            fut.set_exception(e)
