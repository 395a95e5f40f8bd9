"""Tables ``receipts`` and ``receipts_stream`` (DDL and reasons: migration 0025).

One store for both engines. A receipt write takes the next stream position
and upserts the (room, type, user, thread) row in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database
from homeserver.storage.sql import placeholders

UNTHREADED = ""  # thread_id column value of an unthreaded receipt

# SQLite's default limit of bound parameters is 32766; stay far below it.
_ROOM_CHUNK = 500

_NEXT_POS = "UPDATE receipts_stream SET pos = pos + 1 WHERE id = 1 RETURNING pos"
_CURRENT_POS = "SELECT pos FROM receipts_stream WHERE id = 1"
_UPSERT = (
    "INSERT INTO receipts"
    " (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET"
    " event_id = excluded.event_id, ts = excluded.ts, stream_pos = excluded.stream_pos"
    # Never backwards: a receipt for an event older (in stream order) than the one the
    # user's receipt of this kind names already is ignored (e.g. from a lagging device).
    " WHERE NOT EXISTS (SELECT 1 FROM events o JOIN events n ON n.event_id = excluded.event_id"
    " WHERE o.event_id = receipts.event_id AND n.stream_ordering < o.stream_ordering)"
    " RETURNING stream_pos"
)
_SINCE = (
    "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos"
    " FROM receipts WHERE stream_pos > $1 AND stream_pos <= $2"
    " AND (receipt_type <> 'm.read.private' OR user_id = $3)"
    " AND room_id IN ({rooms}) ORDER BY stream_pos"
)
_RANGE = (
    "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, stream_pos"
    " FROM receipts WHERE stream_pos > $1 AND stream_pos <= $2 AND receipt_type = $3"
    " ORDER BY stream_pos LIMIT $4"
)


@dataclass(frozen=True, slots=True)
class ReceiptRecord:
    room_id: str
    receipt_type: str
    user_id: str
    thread_id: str | None  # None: unthreaded
    event_id: str
    ts: int
    stream_pos: int


def _record(row: Any) -> ReceiptRecord:
    thread: str = row[3]
    return ReceiptRecord(
        room_id=row[0],
        receipt_type=row[1],
        user_id=row[2],
        thread_id=thread if thread != UNTHREADED else None,
        event_id=row[4],
        ts=int(row[5]),
        stream_pos=int(row[6]),
    )


class ReceiptStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def upsert(
        self,
        room_id: str,
        receipt_type: str,
        user_id: str,
        thread_id: str | None,
        event_id: str,
        ts: int,
    ) -> ReceiptRecord | None:
        """Store the latest receipt of its kind; returns it with its new stream position,
        or None when it names an event before the one the stored receipt names."""
        thread = UNTHREADED if thread_id is None else thread_id
        async with self.db.transaction() as txn:
            pos = int(await txn.fetchval(_NEXT_POS))
            stored = await txn.fetchval(
                _UPSERT, room_id, receipt_type, user_id, thread, event_id, ts, pos
            )
        if stored is None:
            return None
        return ReceiptRecord(room_id, receipt_type, user_id, thread_id, event_id, ts, pos)

    async def current_position(self) -> int:
        return int(await self.db.fetchval(_CURRENT_POS))

    async def since(
        self, room_ids: Sequence[str], since_pos: int, upto_pos: int, for_user: str
    ) -> list[ReceiptRecord]:
        """Receipts in ``room_ids`` with ``since_pos < stream_pos <= upto_pos``,
        private ones only when they belong to ``for_user``; in stream order."""
        out: list[ReceiptRecord] = []
        for start in range(0, len(room_ids), _ROOM_CHUNK):
            chunk = list(room_ids[start : start + _ROOM_CHUNK])
            rooms = placeholders(len(chunk), 4)
            rows = await self.db.fetchall(
                _SINCE.format(rooms=rooms), since_pos, upto_pos, for_user, *chunk
            )
            out.extend(_record(r) for r in rows)
        out.sort(key=lambda r: r.stream_pos)
        return out

    async def range_of_type(
        self, receipt_type: str, since_pos: int, upto_pos: int, limit: int
    ) -> list[ReceiptRecord]:
        """Receipts of one type across all rooms in a stream range (the federation sender)."""
        rows = await self.db.fetchall(_RANGE, since_pos, upto_pos, receipt_type, limit)
        return [_record(r) for r in rows]
