"""Tables ``event_push_actions`` (DDL and reasons: migration 0050) and
``event_push_shared`` (migration 0395), and the read positions /sync and
/notifications compare them with.

A user's notifications are their own rows (``notify`` or ``highlight`` set: a row
with neither only hides the shared row of its event from them) and the shared rows
that cover them: in a room where their ``push_member_spans`` span holds the row's
position, not sent by them, and with no row of their own for that event
(``_COVERED``). Every read below is one statement over both.

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
_INSERT_SHARED = (
    "INSERT INTO event_push_shared (event_nid, room_nid, stream_ordering, thread_id, sender,"
    " notify, highlight, actions, ts) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
    " ON CONFLICT (event_nid) DO NOTHING"
)
# Shared rows ``s`` that count for user $1 (see the module docstring).
_COVERED = (
    "s.sender <> $1 AND EXISTS (SELECT 1 FROM push_member_spans m WHERE m.user_id = $1"
    " AND m.room_nid = s.room_nid AND m.start_so <= s.stream_ordering"
    " AND (m.end_so IS NULL OR m.end_so > s.stream_ordering))"
    " AND NOT EXISTS (SELECT 1 FROM event_push_actions p WHERE p.user_id = $1"
    " AND p.event_nid = s.event_nid)"
)
# The same, reached from the user's spans (reads over all their rooms).
_SHARED_OF_USER = (
    "FROM push_member_spans m JOIN event_push_shared s ON s.room_nid = m.room_nid"
    " AND s.stream_ordering >= m.start_so AND (m.end_so IS NULL OR s.stream_ordering < m.end_so)"
    " WHERE m.user_id = $1 AND s.sender <> $1 AND NOT EXISTS (SELECT 1 FROM event_push_actions p"
    " WHERE p.user_id = $1 AND p.event_nid = s.event_nid)"
)
_SHARED_COLUMNS = (
    "m.user_id, s.room_nid, s.event_nid, s.stream_ordering, s.thread_id, s.notify,"
    " s.highlight, s.actions, s.ts"
)
_COUNTED = "(notify = 1 OR highlight = 1)"
# User $1's read receipts ``rc``, with the events ``re`` they name.
_READ_RECEIPTS = (
    "FROM receipts rc JOIN events re ON re.event_id = rc.event_id"
    " WHERE rc.user_id = $1 AND rc.receipt_type IN ('m.read', 'm.read.private')"
)
_READ_POSITIONS = (
    f"SELECT rc.room_id, rc.thread_id, MAX(re.stream_ordering) AS pos {_READ_RECEIPTS}"
    " AND rc.room_id IN ({rooms}) GROUP BY rc.room_id, rc.thread_id"
)


def main_read_receipts(rooms: str) -> str:
    """FROM and WHERE over user $1's receipts ``rc`` (events ``re``) that read a room as a
    whole, unthreaded and ``main``: the newest is the position counts without threads
    start after. ``rooms``: a condition on ``rc.room_id`` ("= r.room_id", "IN (...)")."""
    return f"{_READ_RECEIPTS} AND rc.thread_id IN ('', '{MAIN}') AND rc.room_id {rooms}"


def counted_rows(
    where: str,
    cols: str = "room_nid, thread_id, notify, highlight, stream_ordering",
    joined: str = "",
) -> str:
    """Every notification row of user $1 matching ``where``, own and shared, as one row
    source ``u`` of ``cols``; both name the rows' columns unqualified (``room_nid``,
    ``thread_id``, ``stream_ordering``, ``notify``, ``highlight``). ``joined``: FROM items
    each row is read with, which ``where`` may name (a /sync's rooms and read positions:
    ``sync/store.py``); the one place that says which rows count."""
    src = f"{joined}, " if joined else ""
    return (
        f"(SELECT {cols} FROM {src}event_push_actions WHERE user_id = $1 AND {_COUNTED}"
        f" AND ({where}) UNION ALL SELECT {cols} FROM {src}event_push_shared s"
        f" WHERE ({where}) AND {_COUNTED} AND {_COVERED}) AS u"
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
class SharedRow:
    """An event's outcome for every local member joined at it who is neither its
    sender nor has a ``PushActionRow`` of their own for it."""

    room_nid: int
    event_nid: int
    stream_ordering: int
    thread_id: str
    sender: str
    notify: bool
    highlight: bool
    actions: tuple[Any, ...]
    ts: int

    def for_user(self, user_id: str) -> PushActionRow:
        return PushActionRow(
            user_id,
            self.room_nid,
            self.event_nid,
            self.stream_ordering,
            self.thread_id,
            self.notify,
            self.highlight,
            self.actions,
            self.ts,
        )


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
        """Insert inside an open transaction (the push evaluator's, which moves its
        cursor in it: see evaluation.py)."""
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

    async def add_shared_in(self, q: Queries, rows: Sequence[SharedRow]) -> None:
        if rows:
            await q.executemany(
                _INSERT_SHARED,
                [
                    (
                        r.event_nid,
                        r.room_nid,
                        r.stream_ordering,
                        r.thread_id,
                        r.sender,
                        int(r.notify),
                        int(r.highlight),
                        json.dumps(list(r.actions)),
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
        """thread id -> (counts of notifications after ``after``, the oldest one's ordering)."""
        return (await self.counts_after_many(user_id, {room_nid: after}))[room_nid]

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
                f" MIN(stream_ordering) AS so FROM {counted_rows(where)}"
                " GROUP BY room_nid, thread_id",
                user_id,
                *(v for pair in chunk for v in pair),
            )
            _fold_counts(rows, out)
        return out

    async def counts_after_read_many(
        self, user_id: str, rooms: Sequence[tuple[int, str]]
    ) -> dict[int, dict[str, tuple[ThreadCounts, int]]]:
        """``counts_after_many`` after each room's read position, the newer of the
        user's unthreaded and ``main`` read receipts (``read_positions``), in ONE
        statement per 200 rooms: a /sync's unread counts without threads, where the
        receipts used to be a statement of their own (a round trip on PostgreSQL).
        ``rooms``: (room nid, room id) pairs."""
        out: dict[int, dict[str, tuple[ThreadCounts, int]]] = {n: {} for n, _ in rooms}
        items = sorted(rooms)
        for start in range(0, len(items), 200):
            chunk = items[start : start + 200]
            ids = placeholders(len(chunk), 2)
            where = " OR ".join(
                f"(room_nid = ${len(chunk) + 2 + i} AND stream_ordering >"
                f" COALESCE((SELECT pos FROM rp WHERE room_id = ${2 + i}), 0))"
                for i in range(len(chunk))
            )
            rows = await self.db.fetchall(
                "WITH rp (room_id, pos) AS (SELECT rc.room_id, MAX(re.stream_ordering)"
                f" {main_read_receipts(f'IN ({ids})')} GROUP BY rc.room_id)"
                " SELECT room_nid, thread_id, SUM(notify) AS n, SUM(highlight) AS h,"
                f" MIN(stream_ordering) AS so FROM {counted_rows(where)}"
                " GROUP BY room_nid, thread_id",
                user_id,
                *(room_id for _, room_id in chunk),
                *(nid for nid, _ in chunk),
            )
            _fold_counts(rows, out)
        return out

    async def counts_in_thread_after(
        self, user_id: str, room_nid: int, thread_id: str, after: int
    ) -> ThreadCounts:
        where = "room_nid = $2 AND thread_id = $3 AND stream_ordering > $4"
        row = await self.db.fetchone(
            f"SELECT SUM(notify) AS n, SUM(highlight) AS h FROM {counted_rows(where)}",
            user_id,
            room_nid,
            thread_id,
            after,
        )
        return ThreadCounts(int(row["n"] or 0), int(row["h"] or 0))

    async def notifying_after(self, user_id: str, after: int, limit: int) -> list[PushActionRow]:
        """The user's first ``limit`` notifications that notify, with ``stream_ordering >
        after`` (what a pusher has still to deliver), oldest first."""
        return await self._rows(user_id, "stream_ordering > $2 AND notify = 1", "", [after], limit)

    async def notifications(
        self, user_id: str, before: int | None, limit: int, only_highlight: bool
    ) -> list[PushActionRow]:
        """The user's notifications, newest first, with ``stream_ordering < before``."""
        where = [_COUNTED]
        args: list[Any] = []
        if before is not None:
            args.append(before)
            where.append("stream_ordering < $2")
        if only_highlight:
            where.append("highlight = 1")
        return await self._rows(user_id, " AND ".join(where), "DESC", args, limit)

    async def _rows(
        self, user_id: str, where: str, order: str, args: list[Any], limit: int
    ) -> list[PushActionRow]:
        """Own and shared rows of the user matching ``where`` (parameters from $2), the
        first ``limit`` by stream ordering (``order``: '' or 'DESC'): each side limited
        on its own first, so neither is read further than the answer needs."""
        n = len(args) + 2
        sql = (
            f"SELECT * FROM (SELECT {_ROW_COLUMNS} FROM event_push_actions"
            f" WHERE user_id = $1 AND {where} ORDER BY stream_ordering {order} LIMIT ${n}) AS a"
            f" UNION ALL SELECT * FROM (SELECT * FROM (SELECT {_SHARED_COLUMNS} {_SHARED_OF_USER})"
            f" AS s WHERE {where} ORDER BY stream_ordering {order} LIMIT ${n}) AS b"
            f" ORDER BY stream_ordering {order} LIMIT ${n}"
        )
        rows = await self.db.fetchall(sql, user_id, *args, limit)
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


def _fold_counts(rows: Sequence[Any], out: dict[int, dict[str, tuple[ThreadCounts, int]]]) -> None:
    """Rows of (room_nid, thread_id, n, h, so) into ``out``: per room, per thread, the
    counts and the oldest counted position."""
    for r in rows:
        out[int(r["room_nid"])][str(r["thread_id"])] = (
            ThreadCounts(int(r["n"] or 0), int(r["h"] or 0)),
            int(r["so"]),
        )
