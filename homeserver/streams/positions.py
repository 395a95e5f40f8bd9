"""The published position of a stream whose writers commit out of order.

Design note
-----------
A reader (``/sync``) reads a stream up to a position P and then asks only for
what lies above P. So P may be published only when every position at or
below it is committed or abandoned: otherwise an event committed later at a
position below P would never be read (a gap).

On SQLite the single writer hands out positions and commits them in the
same order, so the newest committed position is safe. On PostgreSQL the
positions come from a sequence (``nextval``) so that transactions in
different rooms do not queue behind one counter row; they then commit in
any order::

    A takes 5 ──────────────── commits 5 ───┐
    B takes 6 ── commits 6 ┐                │
                           published stays 4 │ published -> 6
                                             ▼
``PositionTracker`` keeps, in this process (one process per database), the
positions taken and not yet finished. The published position is just below
the oldest unfinished one (or the newest taken, when none is unfinished).
While a position is being taken (``nextval`` in flight, its value unknown)
nothing is published, since the value may be below positions already
finished. A writer waits for its own position to be published before it
tells anyone (wakes /sync, answers the client), so a client reads its own
write and a wake-up is never sent for an event readers cannot see yet.

A crash abandons the positions in flight: they stay holes, which readers
skip. On start the tracker starts from the newest position ever taken.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable


class PositionTracker:
    """Positions taken and finished by writers; the position safe for readers."""

    def __init__(self, published: int) -> None:
        self.published = published
        self._newest_taken = published
        self._taking = 0
        self._unfinished: set[int] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @contextlib.asynccontextmanager
    async def take(self, next_position: Callable[[], Awaitable[int]]) -> AsyncIterator[int]:
        """Take a position with ``next_position`` and hold it for the block: it is finished
        (committed or abandoned) when the block ends, however it ends."""
        self._taking += 1
        try:
            position = await next_position()
        except BaseException:
            self._taking -= 1
            self._advance()
            raise
        self._taking -= 1
        self._unfinished.add(position)
        self._newest_taken = max(self._newest_taken, position)
        self._advance()  # finishes seen while this position was being taken
        try:
            yield position
        finally:
            self._unfinished.discard(position)
            self._advance()

    async def wait_published(self, position: int) -> None:
        """Until readers may see ``position`` (every position below it is finished)."""
        if position <= self.published:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((position, future))
        await future

    def _advance(self) -> None:
        if self._taking:
            return  # a position being taken may come out below the finished ones
        if self._unfinished:
            candidate = min(self._unfinished) - 1
        else:
            candidate = self._newest_taken
        if candidate <= self.published:
            return
        self.published = candidate
        still = []
        for position, future in self._waiters:
            if position <= candidate:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((position, future))
        self._waiters = still
