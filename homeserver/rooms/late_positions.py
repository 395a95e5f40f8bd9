"""PostgreSQL: a persisting transaction takes its stream positions last, just before COMMIT.

Design note
-----------
Positions are gap-free because the ``events`` row of ``stream_positions`` is
row-locked from the moment a transaction takes a position until it commits
(``write_order``): positions are handed out in commit order. Taken first, that
lock covered nearly the whole transaction (event rows, edges, state, search,
txn ids, the outbox hook: ~10 round trips a send, ~80 a createRoom), so the
writers of every room queued behind each other on it; while the holder waited
for the event loop between its round trips, nobody else could commit. Sixteen
senders in a room each spent most of their time there (``pg_stat_activity``:
lock waits on that row were nearly all of the active samples).

So on PostgreSQL the persister writes everything first, with no position:
the event rows with ``stream_ordering`` NULL and the membership rows with a
``placeholder`` (minus the event's index in the transaction), noting here
which rows wait for which position. Then ONE
statement takes the positions for the whole transaction and writes them into
those rows, and the transaction commits::

    BEGIN ─> room lock ─> event rows (no position), edges, state, memberships
      (PLACEHOLDER), search, txn ids, hooks ─> [take N positions, fill the
      rows] ─> COMMIT          (the position row is held only inside [...])

Nothing is weakened: the row is still held from the taking to the COMMIT, so
positions still follow commit order and a reader bounded by the committed
position never skips an event. No other transaction can see the rows before
the COMMIT, when they already hold their positions. The lock is taken last,
after locks on rows of the writer's own room only, and its holder waits for
nothing but its own rows afterwards, so no lock cycle is possible. In-memory
copies made inside the transaction (hooks, the member-list cache) see no
position: hooks get the event as committed in their after-commit callback, and
the member-list caches, which advance only by changes after what they hold,
get the placeholders resolved (``resolve``) when the commit is reported.

SQLite has one writer for the whole transaction anyway: it takes positions
where it writes them (nothing to gain, one statement less).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from homeserver.storage.database import Queries


def placeholder(index: int) -> int:
    """room_memberships.stream_ordering of a row written before its position is known
    (NOT NULL): minus the 1-based index of its event in the transaction (no committed
    row holds one: ``take`` gives every such row its position in the same transaction)."""
    return -index


def resolve(value: int, positions: Sequence[int]) -> int:
    """A position, or a ``placeholder`` resolved with the positions ``take`` returned."""
    return positions[-value - 1] if value < 0 and positions else value


# Takes $1 positions and writes them into the event rows ($2, in order) and the
# membership rows ((room, user) pairs $3/$4, each at the index $5 into $2; 1-based).
_TAKE: Final = (
    "WITH p AS (UPDATE stream_positions SET position = position + $1"
    " WHERE stream_name = 'events' RETURNING position - $1 AS base),"
    " e AS (UPDATE events SET stream_ordering = p.base + x.i"
    " FROM p, unnest($2::bigint[]) WITH ORDINALITY AS x(nid, i)"
    " WHERE events.event_nid = x.nid),"
    " m AS (UPDATE room_memberships SET stream_ordering = p.base + x.i"
    " FROM p, unnest($3::bigint[], $4::text[], $5::bigint[]) AS x(room_nid, user_id, i)"
    " WHERE room_memberships.room_nid = x.room_nid AND room_memberships.user_id = x.user_id)"
    " SELECT base FROM p"
)


@dataclass(slots=True)
class LatePositions:
    """The rows of one transaction that wait for their stream positions."""

    nids: list[int] = field(default_factory=list)  # events, in position order
    # (room nid, user id) -> 1-based index into ``nids`` of the event whose position
    # the membership row takes (the last write of the transaction wins, as in the row).
    members: dict[tuple[int, str], int] = field(default_factory=dict)

    def event(self, nid: int) -> int:
        """The event ``nid`` takes the next position; its 1-based index."""
        self.nids.append(nid)
        return len(self.nids)

    def member(self, room_nid: int, user_id: str, index: int) -> None:
        """The membership row of ``user_id`` takes the position of event ``index``."""
        self.members[(room_nid, user_id)] = index

    async def take(self, q: Queries) -> list[int]:
        """Take the positions (one statement; the row lock lasts until the COMMIT) and
        fill the waiting rows; the events' positions, in order."""
        if not self.nids:
            return []
        keys = list(self.members)
        base = await q.fetchval(
            _TAKE,
            len(self.nids),
            self.nids,
            [k[0] for k in keys],
            [k[1] for k in keys],
            [self.members[k] for k in keys],
        )
        return [int(base) + i for i in range(1, len(self.nids) + 1)]
