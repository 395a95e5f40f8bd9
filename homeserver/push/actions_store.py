"""Table ``event_push_actions`` (DDL and reasons: migration 0050) and the read
positions /sync and /notifications compare it with.

A user's read position in a room is the stream ordering of the event named
by their newest ``m.read`` or ``m.read.private`` receipt; per thread, the
newest of the unthreaded receipt and that thread's own receipt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import per_room_bounds, placeholders

MAIN = "main"
_CHUNK = 500
_ROW_COLUMNS = (
    "user_id, room_nid, event_nid, stream_ordering, thread_id, notify, highlight, actions, ts"
)

_INSERT = (
    "INSERT INTO event_push_actions (user_id, room_nid, event_nid, stream_ordering, thread_id,"
    " notify, highlight, actions, ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    " ON CONFLICT (user_id, event_nid) DO NOTHING"
)
_READ_POSITIONS = (
    "SELECT r.room_id, r.thread_id, MAX(e.stream_ordering) AS pos FROM receipts r"
    " JOIN events e ON e.event_id = r.event_id"
    " WHERE r.user_id = $1 AND r.receipt_type IN ('m.read', 'm.read.private')"
    " AND r.room_id IN ({rooms}) GROUP BY r.room_id, r.thread_id"
)
_COUNTS = (
    "SELECT thread_id, SUM(notify) AS n, SUM(highlight) AS h, MIN(stream_ordering) AS so"
    " FROM event_push_actions"
    " WHERE user_id = $1 AND room_nid = $2 AND stream_ordering > $3 GROUP BY thread_id"
)


@dataclass(frozen=True, slots=True)
class PushActionRow:
    user_id: str
    room_nid: int
    event_nid: int
    stream_ordering: int
    thread_id: str
    notify: bool
    highlight: bool
    actions: tuple[Any, ...]
    ts: int


@dataclass(frozen=True, slots=True)
class ThreadCounts:
    notifications: int
    highlights: int


class PushActionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, rows: Sequence[PushActionRow]) -> None:
        if rows:
            async with self.db.transaction() as q:
                await self.add_in(q, rows)

    async def add_in(self, q: Queries, rows: Sequence[PushActionRow]) -> None:
        """Insert inside an open transaction (the event's own: see notifications.py)."""
        if not rows:
            return
        # The members of a big room share one outcome, hence one actions tuple: encode once.
        encoded: dict[int, str] = {}
        await q.executemany(
            _INSERT,
            [
                (
                    r.user_id,
                    r.room_nid,
                    r.event_nid,
                    r.stream_ordering,
                    r.thread_id,
                    int(r.notify),
                    int(r.highlight),
                    encoded.get(id(r.actions))
                    or encoded.setdefault(id(r.actions), json.dumps(list(r.actions))),
                    r.ts,
                )
                for r in rows
            ],
        )

    async def read_positions(
        self, user_id: str, room_ids: Sequence[str]
    ) -> dict[str, dict[str, int]]:
        """room id -> thread id ('' unthreaded, 'main', a root id) -> read stream ordering."""
        out: dict[str, dict[str, int]] = {}
        for start in range(0, len(room_ids), _CHUNK):
            chunk = list(room_ids[start : start + _CHUNK])
            rooms = placeholders(len(chunk), 2)
            rows = await self.db.fetchall(_READ_POSITIONS.format(rooms=rooms), user_id, *chunk)
            for r in rows:
                if r["pos"] is not None:
                    out.setdefault(str(r["room_id"]), {})[str(r["thread_id"])] = int(r["pos"])
        return out

    async def counts_after(
        self, user_id: str, room_nid: int, after: int
    ) -> dict[str, tuple[ThreadCounts, int]]:
        """thread id -> (counts of rows after ``after``, the oldest such row's ordering)."""
        rows = await self.db.fetchall(_COUNTS, user_id, room_nid, after)
        return {
            str(r["thread_id"]): (ThreadCounts(int(r["n"] or 0), int(r["h"] or 0)), int(r["so"]))
            for r in rows
        }

    async def counts_after_many(
        self, user_id: str, after_by_room: dict[int, int]
    ) -> dict[int, dict[str, tuple[ThreadCounts, int]]]:
        """``counts_after`` for many rooms, each after its own position: one statement
        per 200 rooms (a /sync must not read unread counts room by room)."""
        out: dict[int, dict[str, tuple[ThreadCounts, int]]] = {n: {} for n in after_by_room}
        items = sorted(after_by_room.items())
        for start in range(0, len(items), 200):
            chunk = items[start : start + 200]
            where = per_room_bounds("stream_ordering", ">", len(chunk), 2)
            rows = await self.db.fetchall(
                "SELECT room_nid, thread_id, SUM(notify) AS n, SUM(highlight) AS h,"
                " MIN(stream_ordering) AS so FROM event_push_actions"
                f" WHERE user_id = $1 AND ({where}) GROUP BY room_nid, thread_id",
                user_id,
                *(v for pair in chunk for v in pair),
            )
            for r in rows:
                out[int(r["room_nid"])][str(r["thread_id"])] = (
                    ThreadCounts(int(r["n"] or 0), int(r["h"] or 0)),
                    int(r["so"]),
                )
        return out

    async def counts_in_thread_after(
        self, user_id: str, room_nid: int, thread_id: str, after: int
    ) -> ThreadCounts:
        row = await self.db.fetchone(
            "SELECT SUM(notify) AS n, SUM(highlight) AS h FROM event_push_actions"
            " WHERE user_id = $1 AND room_nid = $2 AND thread_id = $3 AND stream_ordering > $4",
            user_id,
            room_nid,
            thread_id,
            after,
        )
        return ThreadCounts(int(row["n"] or 0), int(row["h"] or 0))

    async def notifying_after(self, user_id: str, after: int, limit: int) -> list[PushActionRow]:
        """The user's first ``limit`` rows that notify, with ``stream_ordering > after``
        (what a pusher has still to deliver), oldest first."""
        rows = await self.db.fetchall(
            f"SELECT {_ROW_COLUMNS} FROM event_push_actions"
            " WHERE user_id = $1 AND stream_ordering > $2 AND notify = 1"
            " ORDER BY stream_ordering LIMIT $3",
            user_id,
            after,
            limit,
        )
        return [_action_row(r) for r in rows]

    async def notifications(
        self, user_id: str, before: int | None, limit: int, only_highlight: bool
    ) -> list[PushActionRow]:
        """The user's notification rows, newest first, with ``stream_ordering < before``."""
        sql = f"SELECT {_ROW_COLUMNS} FROM event_push_actions WHERE user_id = $1"
        args: list[Any] = [user_id]
        if before is not None:
            args.append(before)
            sql += f" AND stream_ordering < ${len(args)}"
        if only_highlight:
            sql += " AND highlight = 1"
        args.append(limit)
        sql += f" ORDER BY stream_ordering DESC LIMIT ${len(args)}"
        rows = await self.db.fetchall(sql, *args)
        return [_action_row(r) for r in rows]


def _action_row(r: Any) -> PushActionRow:
    return PushActionRow(
        str(r["user_id"]),
        int(r["room_nid"]),
        int(r["event_nid"]),
        int(r["stream_ordering"]),
        str(r["thread_id"]),
        bool(r["notify"]),
        bool(r["highlight"]),
        tuple(json.loads(r["actions"])),
        int(r["ts"]),
    )
