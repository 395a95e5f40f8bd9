"""Read-only queries /sync needs over ``room_memberships`` beyond the room service's own.

Each is one indexed read: member counts and heroes for the room
``summary``, and the rooms a user left (``include_leave``). Membership
changes in a stream range (device-list ``changed``/``left``) are the
membership store's, since the room service needs them too.
"""

from __future__ import annotations

from homeserver.rooms.store.membership_store import (
    MEMBERSHIP_COLUMNS,
    Membership,
    membership_from_row,
)
from homeserver.storage.database import Database

_COLS = MEMBERSHIP_COLUMNS


class SyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db

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
