"""Table ``push_member_spans`` (DDL and reasons: migration 0395): the stream positions
at which each local member was joined, as the push evaluator saw them; a shared
notification row (``event_push_shared``) covers the members whose span holds its
position.

Only the evaluator writes here, in stream order, inside its batch transaction: before
an event's rows, ``plan`` makes the open spans of the event's room the members joined
at the event (closing the others' at its position, opening the new ones' there). The
open spans of recently seen rooms are kept in memory, so a message costs no read of
the room's members here and writes nothing unless a membership changed; the copy is
replaced only after the transaction committed and dropped when it failed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders

MAX_ROOMS = 512  # rooms whose open spans stay in memory (least recently used dropped)
_CHUNK = 500

_OPEN = (
    "INSERT INTO push_member_spans (user_id, room_nid, start_so, end_so)"
    " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, room_nid, start_so) DO NOTHING"
)
_CLOSE = (
    "UPDATE push_member_spans SET end_so = $3"
    " WHERE user_id = $1 AND room_nid = $2 AND end_so IS NULL AND start_so < $3"
)


@dataclass(slots=True)
class SpanPlan:
    """The span writes of one batch, and the open spans of its rooms afterwards."""

    # Spans open before the batch, closed in it: (user, room, end).
    closes: list[tuple[str, int, int]] = field(default_factory=list)
    # Spans opened in the batch: (user, room, start, end or None while open).
    opens: list[tuple[str, int, int, int | None]] = field(default_factory=list)
    after: dict[int, frozenset[str]] = field(default_factory=dict)


class MemberSpans:
    def __init__(self, db: Database, max_rooms: int = MAX_ROOMS) -> None:
        self.db = db
        self.max_rooms = max_rooms
        self._open: OrderedDict[int, frozenset[str]] = OrderedDict()

    async def plan(self, events: Iterable[tuple[int, int, frozenset[str]]]) -> SpanPlan:
        """The writes that make, at each (room, position, local members joined there) in
        stream order, the open spans of the room exactly those members."""
        events = list(events)
        current = await self._load({room for room, _, _ in events})
        plan = SpanPlan()
        started: dict[tuple[str, int], int] = {}  # spans opened in this batch, still open
        for room, position, joined in events:
            before = current[room]
            if before is joined or before == joined:  # the same object: the room's cache
                continue
            for user in sorted(before - joined):
                start = started.pop((user, room), None)
                if start is None:
                    plan.closes.append((user, room, position))
                elif start < position:
                    plan.opens.append((user, room, start, position))
            for user in sorted(joined - before):
                started[(user, room)] = position
            current[room] = joined
        plan.opens.extend((user, room, start, None) for (user, room), start in started.items())
        plan.after = current
        return plan

    async def apply_in(self, q: Queries, plan: SpanPlan) -> None:
        """Write ``plan`` inside the batch's transaction (closes first: a span opened in
        the batch must not be taken for the one it follows)."""
        if plan.closes:
            await q.executemany(_CLOSE, plan.closes)
        if plan.opens:
            await q.executemany(_OPEN, plan.opens)

    def committed(self, plan: SpanPlan) -> None:
        """The batch's transaction committed: its open spans are the database's."""
        for room, members in plan.after.items():
            self._remember(room, members)

    def holds(self, room: int, joined: frozenset[str]) -> bool:
        """Whether the room's open spans, as committed, are exactly ``joined`` (an event
        with those members joined writes no span), known without a read."""
        current = self._open.get(room)
        return current is not None and (current is joined or current == joined)

    def forget(self) -> None:
        """A transaction failed (or another process may have written): read again."""
        self._open.clear()

    async def _load(self, rooms: set[int]) -> dict[int, frozenset[str]]:
        out: dict[int, frozenset[str]] = {}
        missing = []
        for room in rooms:
            cached = self._open.get(room)
            if cached is None:
                missing.append(room)
            else:
                self._open.move_to_end(room)
                out[room] = cached
        for start in range(0, len(missing), _CHUNK):
            chunk = sorted(missing[start : start + _CHUNK])
            found: dict[int, set[str]] = {room: set() for room in chunk}
            rows = await self.db.fetchall(
                "SELECT room_nid, user_id FROM push_member_spans"
                f" WHERE end_so IS NULL AND room_nid IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for r in rows:
                found[int(r["room_nid"])].add(str(r["user_id"]))
            for room, members in found.items():
                out[room] = frozenset(members)
                self._remember(room, out[room])
        return out

    def _remember(self, room: int, members: frozenset[str]) -> None:
        self._open[room] = members
        self._open.move_to_end(room)
        while len(self._open) > self.max_rooms:
            self._open.popitem(last=False)
