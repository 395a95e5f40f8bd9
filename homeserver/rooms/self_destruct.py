"""Self-destructing events (MSC2228, unstable; off unless
``msc2228_self_destructing_events`` is set, as in Synapse).

Design note
-----------
A non-state event whose content holds an integer
``org.matrix.self_destruct_after`` (a time in ms since the epoch) is pruned
at that time: stored in its room version's redacted form, the same stored
form an applied redaction or an account erasure leaves, so every reader
(/messages, /sync, /context, search, federation) serves the pruned event
from then on. No redaction event is sent; each server holding the event
prunes its own copy (the key is in the content every server receives).

The expiry row is written in the event's own transaction (a persister
transaction hook), so an acknowledged event cannot lose its expiry in a
crash; the job sleeps until the earliest expiry and is woken after a commit
that adds an earlier one. Rows of events that were already pruned (by a
redaction) are simply dropped when due.
"""

from __future__ import annotations

import asyncio
import logging

from homeserver.clock import Clock
from homeserver.rooms.persist import AfterCommit, PersistPlan
from homeserver.rooms.redactions import redacted_event
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.purge_store import PurgeStore
from homeserver.storage.database import Database, Queries

log = logging.getLogger("myelin.rooms.self_destruct")

SELF_DESTRUCT_AFTER = "org.matrix.self_destruct_after"
# Events pruned per transaction, and the longest sleep between two looks.
_BATCH = 100
_MAX_SLEEP_S = 3600.0


def expiry_of(stored: StoredEvent) -> int | None:
    """The expiry time an event asks for, or None (state events never expire)."""
    ev = stored.event
    if ev.is_state() or stored.rejected_reason is not None or stored.outlier:
        return None
    value = ev.content.get(SELF_DESTRUCT_AFTER)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


class SelfDestructStore:
    """Table ``event_expiry``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, q: Queries, event_nid: int, expiry_ts: int) -> None:
        await q.execute(
            "INSERT INTO event_expiry (event_nid, expiry_ts) VALUES ($1, $2)"
            " ON CONFLICT (event_nid) DO NOTHING",
            event_nid,
            expiry_ts,
        )

    async def next_expiry(self) -> int | None:
        value = await self.db.fetchval("SELECT MIN(expiry_ts) FROM event_expiry")
        return None if value is None else int(value)

    async def due(self, now_ms: int) -> list[int]:
        rows = await self.db.fetchall(
            "SELECT event_nid FROM event_expiry WHERE expiry_ts <= $1"
            f" ORDER BY expiry_ts, event_nid LIMIT {_BATCH}",
            now_ms,
        )
        return [int(r[0]) for r in rows]

    async def remove(self, q: Queries, event_nids: list[int]) -> None:
        await q.executemany(
            "DELETE FROM event_expiry WHERE event_nid = $1", [(n,) for n in event_nids]
        )


class SelfDestruct:
    def __init__(
        self,
        db: Database,
        events: EventStore,
        purge_store: PurgeStore,
        clock: Clock,
    ) -> None:
        self.db = db
        self.store = SelfDestructStore(db)
        self.events = events
        self.purge_store = purge_store
        self.clock = clock
        self._wake = asyncio.Event()

    async def in_transaction(
        self, q: Queries, stored: StoredEvent, _plan: PersistPlan
    ) -> AfterCommit | None:
        """Persister hook: record the event's expiry with the event."""
        expiry = expiry_of(stored)
        if expiry is None:
            return None
        await self.store.add(q, stored.event_nid, expiry)
        return lambda _committed: self._wake.set()

    async def expire_due(self) -> int:
        """Prune every event whose time has come; how many were pruned."""
        pruned_total = 0
        for _ in range(1_000_000):
            nids = await self.store.due(self.clock.now_ms())
            if not nids:
                break
            found = await self.events.by_nids(nids)
            pruned = []
            for nid in nids:
                stored = found.get(nid)
                if stored is None:
                    continue
                redacted = redacted_event(stored.event)
                if redacted.pdu != stored.event.pdu:
                    pruned.append((nid, redacted))
            async with self.db.transaction() as q:
                await self.purge_store.store_pruned(q, pruned)
                await self.store.remove(q, nids)
            self.events.forget(nid for nid, _ in pruned)
            pruned_total += len(pruned)
        return pruned_total

    async def run(self) -> None:
        """Background task: sleep until the earliest expiry (or a wake-up), prune."""
        while True:
            # Cleared before looking: a commit after this point wakes the wait below.
            self._wake.clear()
            try:
                pruned = await self.expire_due()
                if pruned:
                    log.info("self-destructing events: %d pruned", pruned)
                nxt = await self.store.next_expiry()
            except Exception:
                log.exception("self-destruct pass failed")
                nxt = None
            delay = _MAX_SLEEP_S
            if nxt is not None:
                delay = min(_MAX_SLEEP_S, max(0.0, (nxt - self.clock.now_ms()) / 1000))
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
