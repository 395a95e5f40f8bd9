"""Sliding sync connections and their positions (tables in migration 0170).

Design note
-----------
``pos`` is the number of a row in ``sliding_sync_positions``, valid only for
the (user, device, conn_id) that created it. A position holds the stream
token the answer was built at, the connection's sticky room subscriptions
and the list counts sent, and its ``sliding_sync_rooms`` rows say, for each
room ever sent on the connection, how far it was sent. Saving a position
copies the previous position's rooms (one INSERT ... SELECT) and writes the
rooms sent in this answer over them, in one transaction: the old position
stays valid, so a client whose answer was lost repeats its request and gets
it again. When a client sends position P, positions before P are deleted.
A connection unused for ``CONNECTION_TTL_MS`` is forgotten: its positions
answer ``M_UNKNOWN_POS`` and the client starts again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders

CONNECTION_TTL_MS = 7 * 24 * 3600 * 1000


@dataclass(frozen=True)
class RoomSent:
    """How far a room was sent on a connection."""

    sent_upto: int
    membership: str
    required_state: str
    timeline_limit: int


@dataclass
class Position:
    conn_nid: int
    pos_nid: int | None
    stream_token: str | None
    subscriptions: dict[str, Any] = field(default_factory=dict)
    list_counts: dict[str, int] = field(default_factory=dict)
    rooms: dict[str, RoomSent] = field(default_factory=dict)


async def _delete_positions(q: Queries, where: str, *args: Any) -> None:
    await q.execute(
        "DELETE FROM sliding_sync_rooms WHERE pos_nid IN"
        f" (SELECT pos_nid FROM sliding_sync_positions WHERE {where})",
        *args,
    )
    await q.execute(f"DELETE FROM sliding_sync_positions WHERE {where}", *args)


class ConnectionStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def start(self, user_id: str, device_id: str, conn_id: str, now_ms: int) -> Position:
        """A request without ``pos``: the connection starts over, empty."""
        async with self.db.transaction() as q:
            conn_nid = await q.fetchval(
                "SELECT conn_nid FROM sliding_sync_connections"
                " WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
                user_id,
                device_id,
                conn_id,
            )
            if conn_nid is None:
                conn_nid = await q.fetchval(
                    "INSERT INTO sliding_sync_connections (user_id, device_id, conn_id,"
                    " last_used_ts) VALUES ($1, $2, $3, $4) RETURNING conn_nid",
                    user_id,
                    device_id,
                    conn_id,
                    now_ms,
                )
            else:
                await _delete_positions(q, "conn_nid = $1", int(conn_nid))
                await q.execute(
                    "UPDATE sliding_sync_connections SET last_used_ts = $1 WHERE conn_nid = $2",
                    now_ms,
                    int(conn_nid),
                )
            # Forget this user's other connections that nobody has used for a long time.
            stale = await q.fetchall(
                "SELECT conn_nid FROM sliding_sync_connections WHERE user_id = $1"
                " AND last_used_ts < $2 AND conn_nid <> $3",
                user_id,
                now_ms - CONNECTION_TTL_MS,
                int(conn_nid),
            )
            for r in stale:
                await self._drop(q, int(r["conn_nid"]))
        return Position(int(conn_nid), None, None)

    async def _drop(self, q: Queries, conn_nid: int) -> None:
        await _delete_positions(q, "conn_nid = $1", conn_nid)
        await q.execute("DELETE FROM sliding_sync_connections WHERE conn_nid = $1", conn_nid)

    async def load(
        self, user_id: str, device_id: str, conn_id: str, pos_nid: int, now_ms: int
    ) -> Position | None:
        """The position, if it is this connection's and the connection is alive."""
        row = await self.db.fetchone(
            "SELECT p.conn_nid, p.stream_token, p.subscriptions, p.list_counts,"
            " c.last_used_ts FROM sliding_sync_positions p JOIN sliding_sync_connections c"
            " ON c.conn_nid = p.conn_nid WHERE p.pos_nid = $1 AND c.user_id = $2"
            " AND c.device_id = $3 AND c.conn_id = $4",
            pos_nid,
            user_id,
            device_id,
            conn_id,
        )
        if row is None or int(row["last_used_ts"]) < now_ms - CONNECTION_TTL_MS:
            return None
        rows = await self.db.fetchall(
            "SELECT room_id, sent_upto, membership, required_state, timeline_limit"
            " FROM sliding_sync_rooms"
            " WHERE pos_nid = $1",
            pos_nid,
        )
        rooms = {
            str(r["room_id"]): RoomSent(
                int(r["sent_upto"]),
                str(r["membership"]),
                str(r["required_state"]),
                int(r["timeline_limit"]),
            )
            for r in rows
        }
        return Position(
            conn_nid=int(row["conn_nid"]),
            pos_nid=pos_nid,
            stream_token=str(row["stream_token"]),
            subscriptions=json.loads(row["subscriptions"]),
            list_counts=json.loads(row["list_counts"]),
            rooms=rooms,
        )

    async def acknowledge(self, pos: Position, now_ms: int) -> None:
        """The client sent ``pos``: it has every earlier answer; drop older positions."""
        assert pos.pos_nid is not None
        async with self.db.transaction() as q:
            await _delete_positions(q, "conn_nid = $1 AND pos_nid < $2", pos.conn_nid, pos.pos_nid)
            await q.execute(
                "UPDATE sliding_sync_connections SET last_used_ts = $1 WHERE conn_nid = $2",
                now_ms,
                pos.conn_nid,
            )

    async def save(
        self,
        prev: Position,
        stream_token: str,
        subscriptions: dict[str, Any],
        list_counts: dict[str, int],
        sent: dict[str, RoomSent],
        now_ms: int,
    ) -> int:
        """A new position after ``prev``, with ``sent`` over ``prev``'s rooms."""
        async with self.db.transaction() as q:
            pos_nid = int(
                await q.fetchval(
                    "INSERT INTO sliding_sync_positions (conn_nid, stream_token, subscriptions,"
                    " list_counts, created_ts) VALUES ($1, $2, $3, $4, $5) RETURNING pos_nid",
                    prev.conn_nid,
                    stream_token,
                    json.dumps(subscriptions, sort_keys=True),
                    json.dumps(list_counts, sort_keys=True),
                    now_ms,
                )
            )
            if prev.pos_nid is not None:
                keep = sorted(sent)
                sql = (
                    "INSERT INTO sliding_sync_rooms (pos_nid, room_id, sent_upto, membership,"
                    " required_state, timeline_limit) SELECT $1, room_id, sent_upto, membership,"
                    " required_state, timeline_limit FROM sliding_sync_rooms WHERE pos_nid = $2"
                )
                if keep:
                    sql += f" AND room_id NOT IN ({placeholders(len(keep), 3)})"
                await q.execute(sql, pos_nid, prev.pos_nid, *keep)
            await q.executemany(
                "INSERT INTO sliding_sync_rooms (pos_nid, room_id, sent_upto, membership,"
                " required_state, timeline_limit) VALUES ($1, $2, $3, $4, $5, $6)",
                [
                    (
                        pos_nid,
                        room_id,
                        s.sent_upto,
                        s.membership,
                        s.required_state,
                        s.timeline_limit,
                    )
                    for room_id, s in sent.items()
                ],
            )
            await q.execute(
                "UPDATE sliding_sync_connections SET last_used_ts = $1 WHERE conn_nid = $2",
                now_ms,
                prev.conn_nid,
            )
        return pos_nid
