"""SQLite group commit: write transactions that queue behind the one writer commit together.

Design note
-----------
SQLite has one writer connection; every write transaction waits for the one
before it, and with ``synchronous=FULL`` each pays an fsync at its COMMIT. When
sixteen rooms send at once, or four users create rooms at once, the fsyncs (not
the statements) were the cost: each room's group commit (``rooms.send_queue``)
cannot help when each room's queue holds one sender.

So the transactions that queue behind the writer are merged into one database
transaction, a *commit group*, and share its COMMIT::

    txn A ─> lock ─> BEGIN IMMEDIATE ─> A's body ─────────────────┐  (others wait for
    txn B ─> (waits) ─────> lock ─> SAVEPOINT ─> B's body ──────────┤   the lock: leave
    txn C ─> (waits) ─────────────> lock ─> SAVEPOINT ─> C's body ──┤   the group open)
                                  nobody waits (or MAX_GROUP) ─> COMMIT ─> A, B, C answered

- A body runs alone on the writer, exactly as before; it sees the writes of the
  members before it in the group (same connection), so the result is the same
  as running the transactions one after another, each committed at once.
- Whoever holds the lock when nobody else waits for it commits the group; when
  others wait, the group stays open for them, and a *closer* task queued behind
  them (``asyncio.Lock`` is FIFO) commits it if nobody did before. A group ends
  after ``MAX_GROUP`` members at most.
- The members of a group are transactions that were waiting at the same time,
  never one that waited for another: ``transaction()`` returns only after its
  COMMIT, so whatever its caller does next (the room's next event, under the
  room's lock) sees it committed, through any connection. A member sees the
  earlier members' writes through the writer only; the reader connections see
  them once the group commits, which is before any of them is answered.
- Isolation of failures: the first member owns the BEGIN; each later member runs
  inside a SAVEPOINT of its own (never released: the COMMIT ends them all, one
  statement less per member; ``ROLLBACK TO`` finds the newest of that name, its
  own). A member whose body raises is rolled back to its savepoint
  (or, the first one, with the whole transaction, when nobody else is in it
  yet) and gets its own error; the others' writes stay in the group and commit.

Crash safety: ``transaction()`` returns (and so its caller answers anyone) only
after the COMMIT that holds its writes has returned, i.e. once they are durable
under the configured ``synchronous`` level. A crash before that COMMIT loses
the whole group, none of which was acknowledged; WAL makes the COMMIT atomic,
so a group is never half there. A member cancelled while it waits for the
COMMIT still has its writes committed (as a cancelled COMMIT always could).
One cancelled during its BEGIN leaves the writer as it found it: the BEGIN goes
on in the writer's thread, so a task waits for it and rolls it back before the
lock is let go (else every later BEGIN fails: "within a transaction").
If SQLite itself rolls the whole transaction back (it does on disk-full or I/O
errors, ``in_transaction`` turns false), or the COMMIT fails, every member of
the group gets that error: nothing of it was written, nothing was answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

log = logging.getLogger("myelin.storage.group_commit")

# Members of one commit group at most (bounds how long the first one waits).
MAX_GROUP: Final = 64
_SAVEPOINT: Final = "myelin_member"

# Runs one statement on the writer connection's thread (``database._run``).
RunStatement = Callable[[Any, str], Awaitable[None]]
# Runs one statement on the writer at once, in the caller's thread (``database``).
RunNow = Callable[[Any, str], None]


class CommitGroupLost(Exception):
    """SQLite rolled back a whole commit group (a member's statement failed in a way
    that ends the transaction, e.g. disk full): this member's writes are gone too."""


@dataclass(eq=False, slots=True)
class _Group:
    done: asyncio.Future[None]
    members: int = 0  # bodies finished in the group (their writes wait for its COMMIT)
    closer: asyncio.Task[None] | None = None


class CommitGroups:
    """The writer connection's lock and its open commit group (see the design note)."""

    def __init__(
        self,
        writer: Any,
        run: RunStatement,
        max_group: int = MAX_GROUP,
        run_now: RunNow | None = None,
    ) -> None:
        self.writer = writer  # the aiosqlite connection
        self.run = run
        # A member's SAVEPOINT without a wait for the thread (the members' bodies run
        # their statements so too, ``database._WriterQueries``); None: through ``run``.
        self.run_now = run_now
        self.max_group = max_group
        self._lock = asyncio.Lock()
        self._waiting = 0  # tasks waiting for the lock
        self._group: _Group | None = None

    def locked(self) -> bool:
        return self._lock.locked()

    def idle(self) -> bool:
        """Nobody holds or waits for the writer and no group is open: ``exclusive`` gets
        the writer at once, with no group to commit first."""
        return not self._lock.locked() and self._waiting == 0 and self._group is None

    async def _acquire(self) -> None:
        self._waiting += 1
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One member's body: the caller runs its statements on ``writer`` inside the
        block. Leaves once the group's COMMIT holds them (or with the body's error)."""
        await self._acquire()
        group = self._group
        if group is None:
            await self._begin()  # releases the lock itself if it does not return
            group = self._group = _Group(asyncio.get_running_loop().create_future())
        else:
            try:
                # Cancelled while it runs, it still runs (the thread does not stop), but
                # inside the group's transaction: the group's COMMIT ends it, harmless.
                if self.run_now is not None:
                    self.run_now(self.writer, "SAVEPOINT " + _SAVEPOINT)
                else:
                    await self.run(self.writer, "SAVEPOINT " + _SAVEPOINT)
            except BaseException:
                self._lock.release()
                raise
        nested = group.members > 0
        try:
            yield
        except BaseException:
            await self._undo(group, nested)
            raise
        group.members += 1
        self._hand_on(group)
        await asyncio.shield(group.done)

    async def statement(self, run: Callable[[], Awaitable[None]]) -> None:
        """One statement outside any transaction: autocommit on its own when no group is
        open (one job on the thread), else a member of the open group."""
        await self._acquire()
        if self._group is None:
            try:
                await run()
            finally:
                self._lock.release()
            return
        self._lock.release()  # rare: join the open group the ordinary way
        async with self.transaction():
            await run()

    async def exclusive(self, run: Callable[[], Awaitable[None]]) -> None:
        """``run`` alone on the writer outside any group (migrations' own BEGIN ...
        COMMIT): the open group is committed first."""
        await self._acquire()
        try:
            if self._group is not None:
                await self._commit(self._group)
            await run()
        finally:
            self._lock.release()

    async def close(self) -> None:
        """Commit the open group, if any (shutting down)."""
        await self._acquire()
        try:
            if self._group is not None:
                await self._commit(self._group)
        finally:
            self._lock.release()

    # ------------------------------------------------------------ internals

    async def _begin(self) -> None:
        """BEGIN the writer's next group (lock held; released here if this raises).

        The statement runs in the writer's thread, which a cancelled caller does not
        stop: releasing the lock at once would leave the writer inside a transaction
        that no group owns, and every later BEGIN would fail. So a cancelled caller
        leaves the BEGIN to a task of its own that waits for it, rolls back what it
        opened and only then releases the lock."""
        begin = asyncio.ensure_future(self.run(self.writer, "BEGIN IMMEDIATE"))
        try:
            await asyncio.shield(begin)
        except asyncio.CancelledError:
            asyncio.get_running_loop().create_task(self._undo_begin(begin))
            raise
        except BaseException:
            self._lock.release()
            raise

    async def _undo_begin(self, begin: asyncio.Future[None]) -> None:
        """A caller was cancelled during its BEGIN: end what the BEGIN opened (lock held)."""
        try:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await begin
            if self.writer.in_transaction:
                await self.run(self.writer, "ROLLBACK")
        except Exception:
            log.exception("ROLLBACK after a cancelled BEGIN failed")
        finally:
            self._lock.release()

    async def _undo(self, group: _Group, nested: bool) -> None:
        """A member's body failed: take back its writes only (lock held; releases it)."""
        try:
            if nested and self.writer.in_transaction:
                await self.run(self.writer, "ROLLBACK TO " + _SAVEPOINT)
            else:
                # The first member alone in the group, or SQLite ended the whole
                # transaction itself: nothing of the group is left to commit.
                self._group = None
                if self.writer.in_transaction:
                    await self.run(self.writer, "ROLLBACK")
                if group.members:
                    log.error("SQLite rolled back a commit group of %d", group.members)
                    _settle(group, CommitGroupLost("the database rolled the transaction back"))
                else:
                    _settle(group, None)
                self._lock.release()
                return
        except BaseException as e:
            # Could not take it back: the group as a whole is not to be trusted.
            await self._abort(group, e)
            self._lock.release()
            raise
        self._hand_on(group)

    def _hand_on(self, group: _Group) -> None:
        """A member is done with the lock (held): commit the group now if nobody waits
        or it is full, else leave it open for those waiting, with a closer behind them."""
        if self._waiting == 0 or group.members >= self.max_group:
            # Its own task: a caller cancelled here must not leave the group unanswered.
            asyncio.get_running_loop().create_task(self._commit_and_release(group))
            return
        if group.closer is None:
            group.closer = asyncio.get_running_loop().create_task(self._close_later(group))
        self._lock.release()

    async def _close_later(self, group: _Group) -> None:
        await self._acquire()
        if self._group is group:
            await self._commit_and_release(group)
        else:
            self._lock.release()

    async def _commit_and_release(self, group: _Group) -> None:
        try:
            await self._commit(group)
        finally:
            self._lock.release()

    async def _commit(self, group: _Group) -> None:
        """COMMIT the group (lock held); every member learns how it ended."""
        self._group = None
        try:
            await self.run(self.writer, "COMMIT")
        except BaseException as e:
            await self._abort(group, e)
            if not isinstance(e, Exception):
                raise
            return
        _settle(group, None)

    async def _abort(self, group: _Group, error: BaseException) -> None:
        self._group = None
        try:
            if self.writer.in_transaction:
                await self.run(self.writer, "ROLLBACK")
        except Exception:
            log.exception("ROLLBACK of a failed commit group failed")
        if isinstance(error, Exception):
            _settle(group, error)
        else:
            _settle(group, CommitGroupLost("the commit was interrupted"))


def _settle(group: _Group, error: BaseException | None) -> None:
    if group.done.done():
        return
    if error is None:
        group.done.set_result(None)
    else:
        group.done.set_exception(error)
        # Retrieved here too: every member may have gone (cancelled) by now.
        group.done.exception()
