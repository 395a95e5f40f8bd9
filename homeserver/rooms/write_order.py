"""Per-room write order and gap-free stream positions when several processes write.

Design note
-----------
Within one process, ``RoomService.lock`` (an asyncio lock per room) makes
each room linear: read the extremities and state, build, check, persist,
one batch of waiting sends at a time (``send_queue``: a chain, one
transaction; below, "the event" is the chain's first, which sits on the
extremities, and a rebuild builds the whole chain again). Several processes
over one PostgreSQL database each have their own asyncio locks, so PostgreSQL
decides between them:

Room order
    The persisting transaction first takes ``pg_advisory_xact_lock`` keyed
    by the room (``room_lock_key``), which PostgreSQL releases at commit or
    rollback, so no crash can leave it held. Then, for an event built on the
    room's extremities (every local event: ``PersistPlan.expected_extremities``),
    it compares the extremities it was built on with those in the database.
    If another process wrote to the room in between, the event would fork the
    room and carry stale state, so the transaction is abandoned with
    ``RoomMovedOn`` and ``ChainWriter`` builds the event again on the new
    extremities (a bounded number of times). The lock alone would only order
    the commits; the comparison under the lock is what keeps the room linear.
    Holding a lock across the whole build instead would pin a pooled
    connection per waiting writer, and the pool could then run dry while
    every holder waits for a second connection to persist.
    A process that lost the room this way ``TURN_AFTER`` times in a row takes
    its turn (``room_turn``): it holds the same lock, as a transaction lock on
    a connection of its own, across the whole build and persist, so the
    others wait for it instead of beating it again and again (without this, a
    process sending steadily into a busy room could starve the other for
    good). Its own persist skips the lock it already holds (a context
    variable says so). At most ``TURN_SLOTS`` turns per process are open at
    once, so they pin few pooled connections; the pool cannot run dry.
    Not done yet: events received over federation (only the main process
    serves federation) are persisted under the lock but without the
    comparison, so a remote event whose current state was worked out just
    before a worker's local event committed in the same room keeps the room
    ordered but may compute the room's current state without that event.

Stream positions
    Every visible event takes its position with ``UPDATE stream_positions
    SET position = position + 1 ... RETURNING`` inside the same transaction
    (``EventStore.next_stream_ordering``). That row lock is held until
    commit, so a second writer, in any process, waits there until the first
    has committed or rolled back: positions are handed out in commit order,
    and ``stream_positions.position`` as any reader sees it (committed data
    only) is a position below which every event is committed. A reader that
    never goes past it (``EventStore.current_position``, which /sync uses as
    its upper bound) never skips an event. The price is that event writers
    of all rooms serialise on that row from the moment they take a position
    until their commit (as the single SQLite writer does for the whole
    transaction). The advisory lock is always taken first, so the two locks
    are always taken in the same order and cannot deadlock.

SQLite has one process and one writer connection: both steps are skipped
there (the asyncio lock and the single writer already give both).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Collection
from contextvars import ContextVar
from typing import Final

from homeserver.storage.database import Database, Queries

# The first key of the two-key advisory lock form ("room" in ASCII): the second is the
# room. Two-key locks never meet the one-key process lock (homeserver.storage.process_lock).
ROOM_LOCK_SPACE: Final = int.from_bytes(b"room", "big") & 0x7FFFFFFF
# How often ChainWriter builds an event again after another process moved the room on,
# waiting a random moment (up to REBUILD_JITTER_S times the attempt) before each, so two
# processes sending into one room do not keep beating each other to the lock.
MAX_REBUILDS: Final = 30
REBUILD_JITTER_S: Final = 0.01
# After this many lost rebuilds in a row a process takes its turn (``room_turn``).
TURN_AFTER: Final = 2
# Turns open at once per process (each pins one pooled connection while it lasts).
TURN_SLOTS: Final = 2

# The rooms whose lock this task holds for a turn: its persist must not wait for itself.
_TURN_ROOMS: ContextVar[frozenset[int]] = ContextVar("room_turns", default=frozenset())


def rebuild_delay(attempt: int) -> float:
    """Seconds to wait before rebuild ``attempt`` (1-based): random, growing."""
    return random.uniform(0, REBUILD_JITTER_S * attempt)


class RoomMovedOn(Exception):
    """Another process added to the room after the event was built on its extremities."""


def room_lock_key(room_nid: int) -> int:
    """The room's second advisory-lock key: an int4 (sharing one between rooms only
    makes them wait for each other)."""
    return room_nid % 0x7FFFFFFF


async def hold_room_for_write(
    q: Queries, engine: str, room_nid: int, expected_extremities: Collection[int] | None
) -> None:
    """PostgreSQL: take the room's transaction lock, then check that the room's
    extremities are still those the event was built on (raises ``RoomMovedOn``)."""
    if engine != "postgres":
        return
    if room_nid not in _TURN_ROOMS.get():
        await q.execute(
            "SELECT pg_advisory_xact_lock($1, $2)", ROOM_LOCK_SPACE, room_lock_key(room_nid)
        )
    if expected_extremities is None:
        return
    rows = await q.fetchall(
        "SELECT event_nid FROM forward_extremities WHERE room_nid = $1", room_nid
    )
    if {int(r["event_nid"]) for r in rows} != set(expected_extremities):
        raise RoomMovedOn(room_nid)


@contextlib.asynccontextmanager
async def room_turn(db: Database, room_nid: int) -> AsyncIterator[None]:
    """PostgreSQL: hold the room's lock across a whole build and persist in this task
    (on a connection of its own, released when the block ends or the connection dies).
    SQLite: nothing to do (one process)."""
    if db.engine != "postgres":
        yield
        return
    async with db.transaction() as q:
        await q.execute(
            "SELECT pg_advisory_xact_lock($1, $2)", ROOM_LOCK_SPACE, room_lock_key(room_nid)
        )
        token = _TURN_ROOMS.set(_TURN_ROOMS.get() | {room_nid})
        try:
            yield
        finally:
            _TURN_ROOMS.reset(token)
