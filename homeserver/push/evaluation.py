"""Push rule evaluation behind the send path: one background task, in stream order.

Design note
-----------
A send used to evaluate every local member's push rules before it answered,
so its latency grew with the room. Now the send's transaction writes only the
event; its notification rows come later, here::

    send txn: event row, stream ordering P  --commit-->  answer the client
                                                 |
                                    after-commit: wake()  (worker: bus message)
                                                 v
    PushEvaluator (one process: see below):
        events with cursor < stream ordering <= current position, oldest first,
        at most BATCH at a time -> NotificationService.rows_for(each)
        ONE txn: member spans (spans_store.py), INSERT event_push_shared rows
                 (one per event) and event_push_actions rows (the exceptions),
                 cursor := last position
        after commit: row hooks (pushers), wake sync waiters (workers: bus)

In the send (SQLite, ``evaluate_in``): when the cursor is at the position just before
an ordinary message and its evaluation is flat (no read or lock of the room's members,
no span to write: ``NotificationService.rows_if_flat``), the send's own transaction
writes its rows and moves the cursor onto it. Its woken /sync then waits for nothing and
the batch commit above does not happen for it; anything else (the cursor behind, a
membership change not yet settled, PostgreSQL, whose events take their positions after
the hooks) is left to the task as before.

The runner knows the positions this process persisted (``on_persisted`` gets the
event's nid with its position): when every position after the cursor up to some
position is such an event, a step takes them from memory and reads neither the
stream's position nor the pending events (two reads that, on the path from a send
to its woken /sync, queued behind that sync's own reads). Any gap (a position with
no event, one persisted by another process, a callback not yet run) and the step
reads the database as before.

Durable: the cursor is the ``push_evaluated`` row of ``stream_positions``
(migration 0280), moved in the same transaction as the rows and the member
spans, so every event at or below it has its rows, and after a crash the task
resumes with the first event above it (rows are keyed by user and event, shared
rows by event, spans by user, room and start, so evaluating an event twice
writes nothing twice). So the batch is derived data (``write_batch(derived=True)``):
on SQLite under ``synchronous=FULL``, when it commits alone, it commits without an
fsync of its own; a power cut may lose it whole (rows and cursor together, WAL keeps it
atomic), and the task then evaluates those events again; the next send's fsync makes it
durable with everything before it. The open spans kept in memory are replaced only after
the transaction committed, and dropped when it failed. Positions are handed out in commit order
(``rooms/write_order.py``), so reading up to the events stream's committed
position never skips an event that commits later.

Exact counts: /sync computes unread counts only once the cursor has reached
the sync's upper bound (``caught_up``; a waiter wakes when the cursor moves,
nothing polls), and ``GET /notifications`` once it has reached the current
position. A sync thus never misses the notification of an event that it
already returns, and never counts one twice. The wait is bounded
(``WAIT_S``): if evaluation is stuck (the database is down), counts are
answered as they are rather than holding the sync forever.

Several processes (issue 16): one process runs the task, like the other
background jobs: a single process always, with workers the holder of the
``background`` lease (``homeserver.scaleout``). The others announce the
positions they persisted (``PUSH_EVALUATE``), the runner announces each new
cursor (``PUSH_EVALUATED``), and a process that missed messages reads the
cursor from the database again. Should two processes briefly both run it
(a lease taken over), rows are keyed by user and event and the cursor only
moves forward, so nothing is written twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Final

from homeserver.push.notifications import NOTHING_PUSHED, EventPush, NotificationService
from homeserver.push.spans_store import MemberSpans
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.storage.database import Database, Queries, WriteBatch

log = logging.getLogger("myelin.push.evaluation")

# Bus topics (homeserver.streams.pg_bus): keys are stream positions as text.
PUSH_EVALUATE: Final = "push_evaluate"  # a worker persisted events up to these
PUSH_EVALUATED: Final = "push_evaluated"  # the main process moved the cursor to these
BATCH: Final = 100  # events evaluated and committed together
WAIT_S: Final = 10.0  # the longest a /sync waits for the cursor
RETRY_S: Final = 1.0  # after a failed batch (the database went away), try again
STOP_S: Final = 5.0  # how long a stop waits for the batch under way
STEPS: Final = 50  # batches in a row before the loop looks at its wake-up again
MAX_FAILURES: Final = 3  # tries of one event before it is passed over (``_rows``)
MAX_WAITS: Final = 1000  # bound on cursor moves one waiter sleeps through
MAX_KNOWN: Final = 4 * BATCH  # positions kept in memory for the next steps (``_known``)
SETTLE_S: Final = 0.5  # the longest ``settle`` holds a /sync before it reads

_CURSOR = "SELECT position FROM stream_positions WHERE stream_name = 'push_evaluated'"
_MOVE = (
    "UPDATE stream_positions SET position = $1"
    " WHERE stream_name = 'push_evaluated' AND position < $1"
)
_PENDING = (
    "SELECT event_nid, stream_ordering FROM events"
    " WHERE stream_ordering > $1 AND stream_ordering <= $2 ORDER BY stream_ordering LIMIT $3"
)


class PushEvaluator:
    def __init__(self, db: Database, events: EventStore, notifications: NotificationService):
        self.db = db
        self.events = events
        self.notifications = notifications
        self.spans = MemberSpans(db)
        # Whether a send may evaluate its own message (``evaluate_in``): on PostgreSQL an
        # event takes its position at the end of its transaction, after the hooks.
        self.inline = db.engine == "sqlite"
        # The cursor as this process last saw it (None: not read yet).
        self.position: int | None = None
        # The highest position persisted by this process (or announced to the runner).
        self.persisted = 0
        # Other processes get cursor moves / persisted positions (None: one process).
        self.publish: Callable[[str, list[str]], None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        # Consecutive failures of the event the cursor is stuck at (``_rows``).
        self._failures: dict[int, int] = {}
        self._wake = asyncio.Event()
        self._moved = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        # Position -> event nid of events this process persisted, not yet evaluated
        # (bounded by ``MAX_KNOWN``: beyond it, steps read the database).
        self._known: dict[int, int] = {}

    # ------------------------------------------------------------- signals

    def on_persisted(self, position: int, event_nid: int | None = None) -> None:
        """After an event's commit (a txn hook's callback): evaluate it soon. With the
        event's nid, the next step need not read the database to find it."""
        self.persisted = max(self.persisted, position)
        if event_nid is not None and len(self._known) < MAX_KNOWN:
            self._known[position] = event_nid
        if self._task is not None:
            self._wake.set()
        elif self.publish is not None:
            self.publish(PUSH_EVALUATE, [str(position)])

    def on_announced_persisted(self, keys: list[str] | None) -> None:
        """Bus: another process persisted events (None: it may have, after a catch-up)."""
        if keys:
            self.persisted = max([self.persisted, *(int(k) for k in keys if k.isdigit())])
        if self._task is not None:
            self._wake.set()

    def on_announced_cursor(self, keys: list[str] | None) -> None:
        """Bus: the main process moved the cursor (None: read it again)."""
        if keys is None:
            self._spawn(self._reread())
            return
        positions = [int(k) for k in keys if k.isdigit()]
        if positions:
            self._advance(max(positions))

    def _advance(self, position: int) -> None:
        if self.position is not None and position <= self.position:
            return
        self.position = position
        moved, self._moved = self._moved, asyncio.Event()
        moved.set()

    async def _reread(self) -> None:
        self._advance(int(await self.db.fetchval(_CURSOR)))

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------- readers

    async def caught_up(self, upto: int = 0) -> bool:
        """Wait until every event up to ``upto`` (0: every one this process persisted)
        has its rows; False if that took longer than ``WAIT_S``.

        A /sync passes its upper bound: its counts must include the events it returns,
        and need not wait for those committed after it read its bound (counts are totals
        after the read receipt, so including them or not is equally exact); on a busy
        server that wait was for the evaluation of events another sync will return."""
        target = upto if upto > 0 else self.persisted
        if self.position is not None and self.position >= target:
            return True
        if self._task is None:  # a worker, or not started: the database knows
            await self._reread()
            if self.position is not None and self.position >= target:
                return True
        # Positions with no event (a partial-state room made whole takes one) wake no
        # evaluator by themselves; the evaluator steps over them once it looks. Up to
        # ``persisted`` it was woken (or told) at each commit already: waking it again
        # made it step once more, for nothing, after the step every woken /sync waits on.
        if target > self.persisted:
            self.on_persisted(target)
        if await self._wait_for(target, WAIT_S, while_running=False):
            return True
        log.warning("push evaluation is behind position %d; counts may lag", target)
        return False

    async def settle(self) -> None:
        """Wait until the events this process persisted so far have their rows, when
        this process runs the evaluation and they are at most a batch (one step);
        return at once otherwise, and after ``SETTLE_S`` at most.

        Scheduling only, for a /sync about to read (its counts still wait on
        ``caught_up`` when its read shows the cursor behind): a woken /sync used to
        read its rooms beside the evaluator's commit and then wait for that commit
        anyway; reading after it, its one statement finds the cursor at its head and
        reads the counts itself (``SyncStore.sync_heads_and_memberships``). Never a
        statement (a worker would read the cursor: it returns at once instead), and
        never a wait for a backlog (a burst of federation events: a /sync that needs
        no counts, to-device only, would wait for all of it)."""
        target = self.persisted
        if not self.running or self.position is None or self.position >= target:
            return
        if target - self.position > BATCH:
            return
        await self._wait_for(target, SETTLE_S, while_running=True)

    async def _wait_for(self, target: int, seconds: float, *, while_running: bool) -> bool:
        """Sleep through the cursor's moves until it reaches ``target`` (True), or for
        ``seconds`` at most; ``while_running``: also give up once this process's
        evaluator stops or the cursor is unknown (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        for _ in range(MAX_WAITS):
            moved = self._moved
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):  # no task of its own, unlike wait_for
                    await moved.wait()
            if self.position is not None and self.position >= target:
                return True
            if while_running and (self.position is None or not self.running):
                return False
        return False

    # -------------------------------------------------------------- runner

    @property
    def running(self) -> bool:
        """Whether this process evaluates (a single process; with workers, the holder
        of the background lease)."""
        return self._task is not None and not self._task.done()

    def start(self) -> asyncio.Task[None]:
        """Run the evaluation task (main process only)."""
        self.spans.forget()  # another process may have run it meanwhile
        self._known = {}
        task = asyncio.get_running_loop().create_task(self._run(), name="push-evaluation")
        self._task = task

        def ended(_: asyncio.Task[None]) -> None:
            if self._task is task:  # cancelled (a lease lost): readers ask the database
                self._task = None

        task.add_done_callback(ended)
        return task

    async def stop(self) -> None:
        """Stop between batches (a batch cancelled inside its transaction could leave
        SQLite's writer connection mid-transaction); cancel only if that takes long."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_S)
            except BaseException:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            self._stopping = False
        for pending in list(self._background):
            pending.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _run(self) -> None:
        await self._reread()
        while not self._stopping:
            self._wake.clear()
            try:
                for _ in range(STEPS):
                    if self._stopping or not await self.step():
                        break
                else:
                    self._wake.set()  # more to do: round again, after the others' turn
            except Exception:
                log.exception("push evaluation failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_S)
                continue
            await self._wake.wait()

    async def _rows(self, stored: StoredEvent) -> EventPush:
        """The event's rows. An event that fails ``MAX_FAILURES`` times in a row (a bug
        that some content triggers) is passed over without rows, logged, rather than
        holding every later event's notifications, and every /sync, behind it."""
        try:
            rows = await self.notifications.rows_for(stored)
        except Exception:
            failures = self._failures.get(stored.event_nid, 0) + 1
            if failures < MAX_FAILURES:
                self._failures = {stored.event_nid: failures}
                raise
            log.exception("push rules of %s failed; it notifies nobody", stored.event.event_id)
            rows = NOTHING_PUSHED
        # Only this event's count: the batch is tried again from its start, so an event
        # before a failing one succeeds on every try and must not reset the other's.
        self._failures.pop(stored.event_nid, None)
        return rows

    def _from_memory(self, cursor: int) -> list[int]:
        """The nids of the events at the positions right after ``cursor``, in order, as
        far as this process persisted every one of them (``BATCH`` at most); empty if
        the next position is not known here."""
        nids: list[int] = []
        known = self._known
        while len(nids) < BATCH:
            nid = known.get(cursor + len(nids) + 1)
            if nid is None:
                break
            nids.append(nid)
        return nids

    async def step(self) -> bool:
        """Evaluate the next batch of events and commit their rows with the cursor;
        True if there may be more."""
        cursor = self.position
        if cursor is None:
            cursor = int(await self.db.fetchval(_CURSOR))
        nids = self._from_memory(cursor)
        if nids:
            # Every position up to ``upto`` is one of these events; there may be more
            # (known or not) if this process persisted beyond it.
            upto = cursor + len(nids)
            more = upto < self.persisted
        else:
            upto = await self.events.current_position()
            if upto <= cursor:
                self._advance(cursor)
                return False
            found = await self.db.fetchall(_PENDING, cursor, upto, BATCH)
            nids = [int(r["event_nid"]) for r in found]
            more = len(nids) >= BATCH
            if more:
                upto = int(found[-1]["stream_ordering"])
        by_nid = await self.events.by_nids(nids)
        done: list[tuple[StoredEvent, EventPush]] = []
        for nid in nids:
            stored = by_nid.get(nid)
            if stored is not None:
                done.append((stored, await self._rows(stored)))
        # All of them, or the last of a full batch: every position in between is evaluated.
        end = upto
        spans = await self.spans.plan(
            (stored.room_nid, int(stored.stream_ordering or 0), push.joined)
            for stored, push in done
            if push.joined is not None
        )
        store = self.notifications.store
        # One batch, sent whole: on SQLite one job on the writer's thread when nobody
        # else writes (``Database.write_batch``), not a hand-off per statement.
        batch = WriteBatch()
        await self.spans.apply_in(batch, spans)
        await store.add_shared_in(batch, [p.shared for _, p in done if p.shared is not None])
        await store.add_in(batch, [row for _, push in done for row in push.rows])
        await batch.execute(_MOVE, end)
        try:
            # Derived rows: the events are durable and the cursor moves with the rows,
            # so a power cut that loses this commit only has them evaluated again.
            await self.db.write_batch(batch.statements, derived=True)
        except BaseException:
            self.spans.forget()
            raise
        self.spans.committed(spans)
        if self._known:
            self._known = {p: n for p, n in self._known.items() if p > end}
        self._evaluated(end, done)
        return more

    def _evaluated(self, end: int, done: list[tuple[StoredEvent, EventPush]]) -> None:
        """The rows of ``done`` and the cursor at ``end`` committed: wake the readers
        waiting for it, tell the other processes, hand the rows to the row hooks."""
        self._advance(end)
        if self.publish is not None:
            self.publish(PUSH_EVALUATED, [str(end)])
        for stored, push in done:
            if not push.rows and push.shared is None:
                continue
            for hook in self.notifications.row_hooks:
                try:
                    hook(push, stored)
                except Exception:
                    log.exception("push row hook failed for %s", stored.event.event_id)

    # ------------------------------------------------------ in the send

    async def evaluate_in(self, q: Queries, stored: StoredEvent) -> EventPush | None:
        """Inside the send's transaction (SQLite: the hook knows the event's position):
        write an ordinary message's rows and move the cursor onto it, when that is
        exactly the batch the evaluator would write next. None (nothing written: the
        evaluator takes the event, as for any other) unless

        - this process runs the evaluation and its cursor is at the position just
          before the event (older events are evaluated, and it has committed: the
          in-memory cursor moves only after its commit);
        - the evaluation is O(1) and needs no lock or read of the room's members
          (``NotificationService.rows_if_flat``: the send holds the room's lock);
        - the member spans already say who the shared row covers (no span write).

        The woken /sync then finds the cursor at its head and the evaluator's own
        commit is gone. Rows and cursor commit with the event, under its fsync. A step
        of the evaluator that runs meanwhile may evaluate the event again: rows are
        keyed by user and event, and the cursor only moves forward."""
        so = stored.stream_ordering
        if not self.inline or so is None or not self.running or self.position != so - 1:
            return None
        try:
            push = await self.notifications.rows_if_flat(stored)
        except Exception:
            return None  # the evaluator tries it again, and passes it over if it must
        if (
            push is None
            or push.joined is None
            or not self.spans.holds(stored.room_nid, push.joined)
        ):
            return None
        store = self.notifications.store
        if push.shared is not None:
            await store.add_shared_in(q, [push.shared])
        await store.add_in(q, push.rows)
        await q.execute(_MOVE, so)
        return push

    def evaluated_in(self, stored: StoredEvent, push: EventPush) -> None:
        """After the commit of an event ``evaluate_in`` wrote the rows of."""
        so = int(stored.stream_ordering or 0)
        self.persisted = max(self.persisted, so)
        self._known.pop(so, None)
        self._evaluated(so, [(stored, push)])
