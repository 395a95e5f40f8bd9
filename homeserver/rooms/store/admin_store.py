"""Tables ``blocked_rooms`` and ``room_shutdowns``, and the counts the room admin API shows.

Counts are one grouped query per page of rooms, never one query per room.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database
from homeserver.storage.sql import placeholders


@dataclass(frozen=True, slots=True)
class Shutdown:
    delete_id: str
    room_id: str
    status: str
    error: str
    result: dict[str, Any]
    started_ts: int


class RoomAdminStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ---------------------------------------------------------------- rooms

    async def all_room_nids(self) -> list[int]:
        rows = await self.db.fetchall("SELECT room_nid FROM rooms ORDER BY room_nid")
        return [int(r[0]) for r in rows]

    async def state_counts(self, room_nids: Sequence[int]) -> dict[int, int]:
        """room nid -> number of entries in its current state."""
        if not room_nids:
            return {}
        rows = await self.db.fetchall(
            "SELECT room_nid, COUNT(*) FROM current_state"
            f" WHERE room_nid IN ({placeholders(len(room_nids))}) GROUP BY room_nid",
            *room_nids,
        )
        return {int(r[0]): int(r[1]) for r in rows}

    async def local_joined_counts(
        self, room_nids: Sequence[int], server_name: str
    ) -> dict[int, int]:
        if not room_nids:
            return {}
        rows = await self.db.fetchall(
            "SELECT room_nid, user_id FROM room_memberships WHERE membership = 'join'"
            f" AND room_nid IN ({placeholders(len(room_nids))})",
            *room_nids,
        )
        suffix = ":" + server_name
        out: dict[int, int] = {}
        for r in rows:
            if str(r[1]).endswith(suffix):
                out[int(r[0])] = out.get(int(r[0]), 0) + 1
        return out

    async def public_flags(self, room_nids: Sequence[int]) -> dict[int, bool]:
        if not room_nids:
            return {}
        rows = await self.db.fetchall(
            "SELECT room_nid, is_public FROM rooms"
            f" WHERE room_nid IN ({placeholders(len(room_nids))})",
            *room_nids,
        )
        return {int(r[0]): bool(r[1]) for r in rows}

    async def local_devices(self, user_ids: Sequence[str]) -> int:
        if not user_ids:
            return 0
        value = await self.db.fetchval(
            "SELECT COUNT(*) FROM devices d JOIN users u ON u.user_nid = d.user_nid"
            f" WHERE u.user_id IN ({placeholders(len(user_ids))})",
            *user_ids,
        )
        return int(value)

    # ------------------------------------------------------------- blocking

    async def block(self, room_id: str, by: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO blocked_rooms (room_id, blocked_by, blocked_ts) VALUES ($1, $2, $3)"
            " ON CONFLICT (room_id) DO NOTHING",
            room_id,
            by,
            now,
        )

    async def unblock(self, room_id: str) -> None:
        await self.db.execute("DELETE FROM blocked_rooms WHERE room_id = $1", room_id)

    async def blocked_by(self, room_id: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT blocked_by FROM blocked_rooms WHERE room_id = $1", room_id
        )
        return None if value is None else str(value)

    # ------------------------------------------------------------ shutdowns

    async def save_shutdown(self, s: Shutdown) -> None:
        await self.db.execute(
            "INSERT INTO room_shutdowns (delete_id, room_id, status, error, result, started_ts)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delete_id) DO UPDATE SET"
            " status = excluded.status, error = excluded.error, result = excluded.result",
            s.delete_id,
            s.room_id,
            s.status,
            s.error,
            json.dumps(s.result),
            s.started_ts,
        )

    async def shutdowns_of(self, room_id: str) -> list[Shutdown]:
        rows = await self.db.fetchall(
            "SELECT delete_id, room_id, status, error, result, started_ts FROM room_shutdowns"
            " WHERE room_id = $1 ORDER BY started_ts, delete_id",
            room_id,
        )
        return [_shutdown(r) for r in rows]

    async def shutdown(self, delete_id: str) -> Shutdown | None:
        row = await self.db.fetchone(
            "SELECT delete_id, room_id, status, error, result, started_ts FROM room_shutdowns"
            " WHERE delete_id = $1",
            delete_id,
        )
        return None if row is None else _shutdown(row)


def _shutdown(r: Any) -> Shutdown:
    return Shutdown(r[0], r[1], r[2], r[3], json.loads(r[4]), int(r[5]))
