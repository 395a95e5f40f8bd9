"""Presence (spec: "Presence"): the latest state per user, with a stream position.

Table ``presence`` holds one row per user; each change takes a position in
the ``presence`` stream inside its transaction, so /sync reads the users
whose presence changed in (from, to] with one indexed query. Durations are
computed when read: ``last_active_ago`` from ``last_active_ts``, and
``currently_active`` while an online user was active within the last minute.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import not_found
from homeserver.storage.database import Database
from homeserver.storage.sql import placeholders
from homeserver.userdata import streams

STATES = ("online", "offline", "unavailable")
CURRENTLY_ACTIVE_MS = 60_000
# The widest range of presence positions (so the most rows) that ``changed_sharing``
# checks row by row; past it, it reads the rows of the users sharing a room instead.
MOST_CHECKED = 2_000


@dataclass(frozen=True, slots=True)
class PresenceRow:
    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    stream_pos: int


_COLUMNS = "u.user_id, p.state, p.status_msg, p.last_active_ts, p.stream_pos"


def _row(r: Any) -> PresenceRow:
    return PresenceRow(r[0], r[1], r[2], int(r[3]), int(r[4]))


class PresenceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def set(self, user_nid: int, state: str, status_msg: str | None, now: int) -> int:
        async with self.db.transaction() as txn:
            pos = await streams.next_position(txn, streams.PRESENCE)
            await txn.execute(
                "INSERT INTO presence (user_nid, state, status_msg, last_active_ts, stream_pos)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_nid) DO UPDATE SET"
                " state = excluded.state, status_msg = excluded.status_msg,"
                " last_active_ts = excluded.last_active_ts, stream_pos = excluded.stream_pos",
                user_nid,
                state,
                status_msg,
                now,
                pos,
            )
        return pos

    async def set_remote(
        self, user_id: str, state: str, status_msg: str | None, last_active_ts: int
    ) -> int:
        async with self.db.transaction() as txn:
            pos = await streams.next_position(txn, streams.PRESENCE)
            await txn.execute(
                "INSERT INTO remote_presence (user_id, state, status_msg, last_active_ts,"
                " stream_pos) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET"
                " state = excluded.state, status_msg = excluded.status_msg,"
                " last_active_ts = excluded.last_active_ts, stream_pos = excluded.stream_pos",
                user_id,
                state,
                status_msg,
                last_active_ts,
                pos,
            )
        return pos

    async def get_remote(self, user_id: str) -> PresenceRow | None:
        r = await self.db.fetchone(
            "SELECT user_id, state, status_msg, last_active_ts, stream_pos FROM remote_presence"
            " WHERE user_id = $1",
            user_id,
        )
        return None if r is None else _row(r)

    async def get(self, user_id: str) -> tuple[bool, PresenceRow | None]:
        """(whether the user exists, their presence row if any)."""
        r = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM users u LEFT JOIN presence p ON p.user_nid = u.user_nid"
            " WHERE u.user_id = $1",
            user_id,
        )
        if r is None:
            return False, None
        return True, (None if r[1] is None else _row(r))

    async def local_rows(self, user_ids: list[str]) -> list[PresenceRow]:
        """The presence rows of those local ``user_ids`` who have one."""
        if not user_ids:
            return []
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM presence p JOIN users u ON u.user_nid = p.user_nid"
            f" WHERE u.user_id IN ({placeholders(len(user_ids))})",
            *user_ids,
        )
        return [_row(r) for r in rows]

    async def changed_sharing(
        self, user_id: str, from_pos: int, to_pos: int, most_checked: int = MOST_CHECKED
    ) -> list[PresenceRow]:
        """``changed``, only of ``user_id`` and the users (local or remote) joined to a
        room where ``user_id`` is joined: one statement.

        Two shapes, the same answer. A range of at most ``most_checked`` positions (an
        incremental sync's, or a young server's initial one) holds at most that many
        rows: they are read by their position's index and each is checked by key
        (its user's joined rooms, ours in each), so a sync in a room of thousands
        neither reads its member list nor every presence row. A wider range (an
        initial sync on a server of many users) is read from the other end: the users
        sharing a room with ``user_id``, then their rows. (SQLite builds that list
        whenever it is written as ``IN (SELECT ...)``: ~3 ms at every /sync in a room
        of 2,000 members, the largest part of a lazy-loaded initial sync, even with
        no row in range.)

        The row-by-row check ends in ``LIMIT 1 OFFSET 0``: PostgreSQL otherwise may turn
        the EXISTS into a hashed list of every co-member or a semi-join driven from the
        member list, which it did right after a room filled (its statistics, taken
        before the joins, put a 2,000-member room at 8 rows): 1.5-2.6 ms instead of
        0.1 ms, until autovacuum's next analyze. An OFFSET keeps the subquery a
        per-row check whatever the statistics say (and SQLite checks row by row
        anyway)."""
        if to_pos - from_pos <= most_checked:
            shares = (
                "EXISTS (SELECT 1 FROM room_memberships other"
                " JOIN room_memberships mine ON mine.room_nid = other.room_nid"
                " AND mine.user_id = $1"
                " WHERE other.user_id = {col} AND other.membership = 'join'"
                " AND mine.membership = 'join' LIMIT 1 OFFSET 0)"
            )
            local, remote = shares.format(col="u.user_id"), shares.format(col="r.user_id")
            sharing = ""
        else:
            sharing = (
                "WITH sharing(user_id) AS ("
                " SELECT other.user_id FROM room_memberships mine"
                " JOIN room_memberships other ON other.room_nid = mine.room_nid"
                " WHERE mine.user_id = $1 AND mine.membership = 'join'"
                " AND other.membership = 'join') "
            )
            local = "u.user_id IN (SELECT user_id FROM sharing)"
            remote = "r.user_id IN (SELECT user_id FROM sharing)"
        rows = await self.db.fetchall(
            f"{sharing}SELECT {_COLUMNS} FROM presence p JOIN users u ON u.user_nid = p.user_nid"
            " WHERE p.stream_pos > $2 AND p.stream_pos <= $3"
            f" AND (u.user_id = $1 OR {local})"
            " UNION ALL"
            " SELECT r.user_id, r.state, r.status_msg, r.last_active_ts, r.stream_pos"
            f" FROM remote_presence r WHERE r.stream_pos > $2 AND r.stream_pos <= $3 AND {remote}",
            user_id,
            from_pos,
            to_pos,
        )
        return sorted((_row(r) for r in rows), key=lambda p: p.stream_pos)

    async def changed(self, from_pos: int, to_pos: int) -> list[PresenceRow]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM presence p JOIN users u ON u.user_nid = p.user_nid"
            " WHERE p.stream_pos > $1 AND p.stream_pos <= $2 ORDER BY p.stream_pos",
            from_pos,
            to_pos,
        )
        remote = await self.db.fetchall(
            "SELECT user_id, state, status_msg, last_active_ts, stream_pos FROM remote_presence"
            " WHERE stream_pos > $1 AND stream_pos <= $2",
            from_pos,
            to_pos,
        )
        return sorted((_row(r) for r in [*rows, *remote]), key=lambda p: p.stream_pos)


class PresenceService:
    def __init__(self, db: Database, store: PresenceStore, clock: Clock) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        # (user_id, position) after each committed change: /sync wake-ups.
        self.change_hooks: list[Callable[[str, int], None]] = []

    def content(self, row: PresenceRow) -> dict[str, Any]:
        """The ``m.presence`` content for ``row``, as of now."""
        ago = max(0, self.clock.now_ms() - row.last_active_ts)
        out: dict[str, Any] = {"presence": row.state, "last_active_ago": ago}
        if row.status_msg is not None:
            out["status_msg"] = row.status_msg
        out["currently_active"] = row.state == "online" and ago < CURRENTLY_ACTIVE_MS
        return out

    async def set_status(
        self, user_nid: int, user_id: str, state: str, status_msg: str | None
    ) -> int:
        """Record a state; returns its position in the presence stream."""
        if state not in STATES:
            raise ValueError(state)
        pos = await self.store.set(user_nid, state, status_msg, self.clock.now_ms())
        for hook in self.change_hooks:
            hook(user_id, pos)
        return pos

    async def set_remote_status(
        self, user_id: str, state: str, status_msg: str | None, last_active_ago: int
    ) -> int:
        """Record the presence of a user of another server (federation ``m.presence``)."""
        if state not in STATES:
            raise ValueError(state)
        last_active = self.clock.now_ms() - max(0, last_active_ago)
        pos = await self.store.set_remote(user_id, state, status_msg, last_active)
        for hook in self.change_hooks:
            hook(user_id, pos)
        return pos

    async def get_status(self, user_id: str) -> dict[str, Any]:
        """A user's presence; ``offline`` if never set; 404 for an unknown user."""
        exists, row = await self.store.get(user_id)
        if not exists:
            remote = await self.store.get_remote(user_id)
            if remote is not None:
                return self.content(remote)
            raise not_found("No presence for this user")
        if row is None:
            return {"presence": "offline"}
        return self.content(row)

    async def current_position(self) -> int:
        return await streams.current(self.db, streams.PRESENCE)

    async def changes_since(
        self, from_pos: int, to_pos: int, user_ids: Collection[str] | None = None
    ) -> list[dict[str, Any]]:
        """``m.presence`` events for changes in (from, to], limited to ``user_ids`` if given."""
        out = []
        for row in await self.store.changed(from_pos, to_pos):
            if user_ids is not None and row.user_id not in user_ids:
                continue
            out.append({"type": "m.presence", "sender": row.user_id, "content": self.content(row)})
        return out

    async def changes_for(self, user_id: str, from_pos: int, to_pos: int) -> list[dict[str, Any]]:
        """``m.presence`` events for changes in (from, to] of ``user_id`` and of everyone
        sharing a joined room with them (what /sync shows): one statement."""
        rows = await self.store.changed_sharing(user_id, from_pos, to_pos)
        return [
            {"type": "m.presence", "sender": row.user_id, "content": self.content(row)}
            for row in rows
        ]
