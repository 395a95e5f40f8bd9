"""Table ``partial_state_rooms``: rooms joined with partial state, until their
whole state is merged (see migration 0390 and ``federation.membership.partial_state``).

Reads that run on every inbound PDU or outbound send ask ``is_partial``: a room
that is known to be complete is remembered as such, so a room that never was
partial costs one query per process, not one per event.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from homeserver.storage.database import Database, Queries


@dataclass(frozen=True, slots=True)
class PartialRoom:
    room_nid: int
    join_event_id: str
    joined_via: str
    servers_in_room: list[str]


def _servers(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []


class PartialStateStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Rooms seen complete by this process; a room is only ever marked partial
        # by its join, before the join exists (``mark`` forgets it here).
        self._complete: set[int] = set()

    async def mark(
        self, room_nid: int, join_event_id: str, joined_via: str, servers: list[str], now_ms: int
    ) -> None:
        self._complete.discard(room_nid)
        async with self.db.transaction() as q:
            await q.execute("DELETE FROM partial_state_rooms WHERE room_nid = $1", room_nid)
            await q.execute(
                "INSERT INTO partial_state_rooms"
                " (room_nid, join_event_id, joined_via, servers_in_room, created_ms)"
                " VALUES ($1, $2, $3, $4, $5)",
                room_nid,
                join_event_id,
                joined_via,
                json.dumps(sorted(set(servers))),
                now_ms,
            )

    async def get(
        self, room_nid: int, q: Queries | None = None, *, remember: bool = True
    ) -> PartialRoom | None:
        """The room's marker. ``remember=False`` for a room that may have no state yet
        (an invite): it could still be joined with partial state by another process."""
        if room_nid in self._complete:
            return None
        row = await (q or self.db).fetchone(
            "SELECT room_nid, join_event_id, joined_via, servers_in_room"
            " FROM partial_state_rooms WHERE room_nid = $1",
            room_nid,
        )
        if row is None:
            if remember:
                self._complete.add(room_nid)
            return None
        return PartialRoom(
            int(row["room_nid"]),
            str(row["join_event_id"]),
            str(row["joined_via"]),
            _servers(str(row["servers_in_room"])),
        )

    async def is_partial(self, room_nid: int) -> bool:
        return await self.get(room_nid) is not None

    async def all(self) -> list[PartialRoom]:
        rows = await self.db.fetchall(
            "SELECT room_nid, join_event_id, joined_via, servers_in_room"
            " FROM partial_state_rooms ORDER BY created_ms"
        )
        return [
            PartialRoom(
                int(r["room_nid"]),
                str(r["join_event_id"]),
                str(r["joined_via"]),
                _servers(str(r["servers_in_room"])),
            )
            for r in rows
        ]

    async def clear_in(self, q: Queries, room_nid: int) -> None:
        """Inside the transaction that merges the whole state."""
        await q.execute("DELETE FROM partial_state_rooms WHERE room_nid = $1", room_nid)

    def completed(self, room_nid: int) -> None:
        self._complete.add(room_nid)

    async def clear(self, room_nid: int) -> None:
        await self.db.execute("DELETE FROM partial_state_rooms WHERE room_nid = $1", room_nid)
        self._complete.add(room_nid)
