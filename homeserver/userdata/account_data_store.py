"""Table ``account_data``: the latest content per (user, room, type) and its stream position.

Global account data uses ``room_id = ''``. Content is JSON text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Queries

GLOBAL = ""


@dataclass(frozen=True, slots=True)
class AccountDataRow:
    room_id: str
    type: str
    content: dict[str, Any]
    stream_pos: int


class AccountDataStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(
        self, q: Database | Queries, user_nid: int, room_id: str, data_type: str
    ) -> dict[str, Any] | None:
        raw = await q.fetchval(
            "SELECT content FROM account_data WHERE user_nid = $1 AND room_id = $2 AND type = $3",
            user_nid,
            room_id,
            data_type,
        )
        return None if raw is None else dict(json.loads(raw))

    async def put(
        self,
        txn: Queries,
        user_nid: int,
        room_id: str,
        data_type: str,
        content: dict[str, Any],
        pos: int,
    ) -> None:
        await txn.execute(
            "INSERT INTO account_data (user_nid, room_id, type, content, stream_pos)"
            " VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (user_nid, room_id, type)"
            " DO UPDATE SET content = excluded.content, stream_pos = excluded.stream_pos",
            user_nid,
            room_id,
            data_type,
            json.dumps(content, ensure_ascii=False, separators=(",", ":")),
            pos,
        )

    async def changed(self, user_id: str, from_pos: int, to_pos: int) -> list[AccountDataRow]:
        """Rows of ``user_id`` whose latest change is in ``(from_pos, to_pos]``."""
        rows = await self.db.fetchall(
            "SELECT a.room_id, a.type, a.content, a.stream_pos FROM account_data a"
            " JOIN users u ON u.user_nid = a.user_nid"
            " WHERE u.user_id = $1 AND a.stream_pos > $2 AND a.stream_pos <= $3"
            " ORDER BY a.stream_pos",
            user_id,
            from_pos,
            to_pos,
        )
        return [AccountDataRow(r[0], r[1], dict(json.loads(r[2])), int(r[3])) for r in rows]
