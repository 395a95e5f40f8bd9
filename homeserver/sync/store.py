"""Read-only queries /sync needs over ``room_memberships`` beyond the room service's own.

Each is one indexed read: membership changes in a set of rooms within a
stream range (device-list ``changed``/``left``), member counts and heroes
for the room ``summary``, and the rooms a user left (``include_leave``).
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.rooms.store.membership_store import (
    MEMBERSHIP_COLUMNS,
    Membership,
    membership_from_row,
)
from homeserver.storage.database import Database
from homeserver.storage.sql import placeholders

_CHUNK = 500
_COLS = MEMBERSHIP_COLUMNS


class SyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def membership_changes(
        self, room_nids: Sequence[int], since: int, upto: int
    ) -> list[Membership]:
        """Current memberships in ``room_nids`` whose event is in ``(since, upto]``."""
        out: list[Membership] = []
        nids = list(room_nids)
        for start in range(0, len(nids), _CHUNK):
            chunk = nids[start : start + _CHUNK]
            rooms = placeholders(len(chunk), 3)
            rows = await self.db.fetchall(
                f"SELECT {_COLS} FROM room_memberships WHERE stream_ordering > $1"
                f" AND stream_ordering <= $2 AND room_nid IN ({rooms})",
                since,
                upto,
                *chunk,
            )
            out.extend(membership_from_row(r) for r in rows)
        return out

    async def joined_users(self, room_nids: Sequence[int]) -> set[str]:
        out: set[str] = set()
        nids = list(room_nids)
        for start in range(0, len(nids), _CHUNK):
            chunk = nids[start : start + _CHUNK]
            rooms = placeholders(len(chunk))
            rows = await self.db.fetchall(
                "SELECT DISTINCT user_id FROM room_memberships WHERE membership = 'join'"
                f" AND room_nid IN ({rooms})",
                *chunk,
            )
            out.update(str(r["user_id"]) for r in rows)
        return out

    async def member_counts(self, room_nid: int) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT membership, COUNT(*) AS n FROM room_memberships WHERE room_nid = $1"
            " GROUP BY membership",
            room_nid,
        )
        return {str(r["membership"]): int(r["n"]) for r in rows}

    async def heroes(self, room_nid: int, user_id: str, limit: int = 5) -> list[str]:
        """Up to ``limit`` joined or invited members other than ``user_id``, oldest first;
        when there are none, the members who left (spec: "Calculating the display name")."""
        for memberships in ("'join', 'invite'", "'leave', 'ban'"):
            rows = await self.db.fetchall(
                "SELECT user_id FROM room_memberships WHERE room_nid = $1 AND user_id <> $2"
                f" AND membership IN ({memberships}) ORDER BY stream_ordering LIMIT $3",
                room_nid,
                user_id,
                limit,
            )
            if rows:
                return [str(r["user_id"]) for r in rows]
        return []

    async def left_rooms(self, user_id: str, upto: int) -> list[Membership]:
        """Rooms the user left or was banned from and has not forgotten."""
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM room_memberships WHERE user_id = $1"
            " AND membership IN ('leave', 'ban') AND forgotten = 0 AND stream_ordering <= $2",
            user_id,
            upto,
        )
        return [membership_from_row(r) for r in rows]
