"""Table ``room_memberships``: the current membership of each user in each room.

Derived from the membership events in current state, kept as rows so that
"which rooms is @u in", "who is joined here" and "whose membership changed
since stream position N" are single indexed reads.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import NamedTuple

from homeserver.rooms.store.local_members_cache import LocalMembersCache
from homeserver.storage.database import Database, Queries, Row
from homeserver.storage.sql import joined_servers_sql, placeholders


class Membership(NamedTuple):
    """One row. A named tuple, not a frozen dataclass: /sync builds one per joined room
    on every request (200 for a user in 200 rooms), and a frozen dataclass's ``__init__``
    (an ``object.__setattr__`` per field) cost 1.06 us each against 0.39 us here: 0.21 ms
    of such a user's 1.4 ms incremental sync."""

    room_nid: int
    user_id: str
    membership: str
    event_nid: int
    stream_ordering: int


def membership_from_row(r: Row) -> Membership:
    return Membership(
        int(r["room_nid"]),
        str(r["user_id"]),
        str(r["membership"]),
        int(r["event_nid"]),
        int(r["stream_ordering"]),
    )


def member_displayname(pdu_json: str) -> str | None:
    """``content.displayname`` of a stored member event when it is a string."""
    try:
        content = json.loads(pdu_json).get("content")
    except ValueError:
        return None
    name = content.get("displayname") if isinstance(content, dict) else None
    return name if isinstance(name, str) else None


MEMBERSHIP_COLUMNS = "room_nid, user_id, membership, event_nid, stream_ordering"
_COLS = MEMBERSHIP_COLUMNS
# Values bound per IN list; long lists are read in chunks.
_CHUNK = 500


def user_rooms(memberships: str) -> str:
    """FROM and WHERE over user $1's rows of ``room_memberships`` with one of
    ``memberships`` (an IN list: placeholders, or quoted names in a statement that
    reads them with more, ``sync/store.py``)."""
    return f"FROM room_memberships WHERE user_id = $1 AND membership IN ({memberships})"


class MembershipStore:
    def __init__(self, db: Database, server_name: str | None = None) -> None:
        self.db = db
        # local_users per room; the persister reports commits (see the cache's design note).
        # With the server's name, a commit brings a cached list up to date without a read.
        self.local_cache = LocalMembersCache(server_name=server_name)

    async def set_membership(
        self,
        q: Queries,
        room_nid: int,
        user_id: str,
        membership: str,
        event_nid: int,
        stream_ordering: int,
        displayname: str | None = None,
    ) -> None:
        """``displayname``: the member event's, kept for the user directory. The caller
        reports the commit to ``local_cache.committed``, or a rollback to
        ``local_cache.changed`` (``EventPersister.persist``)."""
        self.local_cache.writing(q, room_nid, user_id, membership, stream_ordering, displayname)
        await q.execute(
            "INSERT INTO room_memberships"
            " (room_nid, user_id, membership, event_nid, stream_ordering, forgotten, displayname)"
            " VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (room_nid, user_id) DO UPDATE SET"
            " membership = EXCLUDED.membership, event_nid = EXCLUDED.event_nid,"
            " stream_ordering = EXCLUDED.stream_ordering, forgotten = 0,"
            " displayname = EXCLUDED.displayname",
            room_nid,
            user_id,
            membership,
            event_nid,
            stream_ordering,
            displayname,
        )

    async def add_memberships(
        self,
        q: Queries,
        room_nid: int,
        stream_ordering: int,
        rows: Sequence[tuple[str, str, int, str | None]],
    ) -> None:
        """Many (user id, membership, event nid, display name) rows at one stream
        position: the members a partial-state join's resync brings, the join's position.
        A row set since (an event received meanwhile) is newer and kept; an older row
        of another event is from before we left the room (a rejoin) and is replaced.
        The caller reports the commit to ``local_cache.changed``."""
        self.local_cache.drop([room_nid])
        await q.executemany(
            "INSERT INTO room_memberships"
            " (room_nid, user_id, membership, event_nid, stream_ordering, forgotten, displayname)"
            " VALUES ($1, $2, $3, $4, $5, 0, $6) ON CONFLICT (room_nid, user_id) DO UPDATE"
            " SET membership = excluded.membership, event_nid = excluded.event_nid,"
            " stream_ordering = excluded.stream_ordering, displayname = excluded.displayname"
            " WHERE room_memberships.stream_ordering < excluded.stream_ordering"
            " AND room_memberships.event_nid <> excluded.event_nid",
            [(room_nid, u, m, n, stream_ordering, d) for u, m, n, d in rows],
        )

    async def event_displaynames(self, q: Queries, event_nids: Sequence[int]) -> dict[int, str]:
        """event nid -> ``content.displayname`` of those member events that have one."""
        out: dict[int, str] = {}
        nids = sorted(set(event_nids))
        for i in range(0, len(nids), _CHUNK):
            chunk = nids[i : i + _CHUNK]
            rows = await q.fetchall(
                "SELECT event_nid, json FROM events"
                f" WHERE event_nid IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for r in rows:
                name = member_displayname(str(r[1]))
                if name is not None:
                    out[int(r[0])] = name
        return out

    async def backfill_displaynames(self, q: Queries, room_nids: Sequence[int]) -> None:
        """Fill ``displayname`` of joined members of rooms from before migration 0340."""
        if not room_nids:
            return
        rows = await q.fetchall(
            "SELECT room_nid, user_id, event_nid FROM room_memberships"
            f" WHERE room_nid IN ({placeholders(len(room_nids))}) AND membership = 'join'",
            *room_nids,
        )
        names = await self.event_displaynames(q, [int(r[2]) for r in rows])
        await q.executemany(
            "UPDATE room_memberships SET displayname = $1 WHERE room_nid = $2 AND user_id = $3",
            [(names[int(r[2])], int(r[0]), str(r[1])) for r in rows if int(r[2]) in names],
        )

    async def get(self, room_nid: int, user_id: str) -> Membership | None:
        row = await self.db.fetchone(
            f"SELECT {_COLS} FROM room_memberships WHERE room_nid = $1 AND user_id = $2",
            room_nid,
            user_id,
        )
        return None if row is None else membership_from_row(row)

    async def rooms_for_user(
        self, user_id: str, memberships: Sequence[str] = ("join",)
    ) -> list[Membership]:
        rows = await self.db.fetchall(
            f"SELECT {_COLS} {user_rooms(placeholders(len(memberships), 2))} ORDER BY room_nid",
            user_id,
            *memberships,
        )
        return [membership_from_row(r) for r in rows]

    async def changed_since(self, user_id: str, since: int, upto: int) -> list[Membership]:
        """The user's memberships whose event came after ``since`` (and not after ``upto``)."""
        if upto <= since:
            return []  # an empty range: no statement
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM room_memberships WHERE user_id = $1"
            " AND stream_ordering > $2 AND stream_ordering <= $3 AND forgotten = 0",
            user_id,
            since,
            upto,
        )
        return [membership_from_row(r) for r in rows]

    async def members(
        self, room_nid: int, memberships: Sequence[str] = ("join",)
    ) -> list[Membership]:
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM room_memberships WHERE room_nid = $1"
            f" AND membership IN ({placeholders(len(memberships), 2)}) ORDER BY user_id",
            room_nid,
            *memberships,
        )
        return [membership_from_row(r) for r in rows]

    async def earliest(
        self, room_nid: int, exclude: str, memberships: Sequence[str], limit: int
    ) -> list[str]:
        """Up to ``limit`` users with one of ``memberships``, oldest first (a room's
        heroes: spec client-server "Calculating the display name for a room")."""
        rows = await self.db.fetchall(
            "SELECT user_id FROM room_memberships WHERE room_nid = $1 AND user_id <> $2"
            f" AND membership IN ({placeholders(len(memberships), 4)})"
            " ORDER BY stream_ordering LIMIT $3",
            room_nid,
            exclude,
            limit,
            *memberships,
        )
        return [str(r["user_id"]) for r in rows]

    async def push_members(
        self, room_nid: int, since: int
    ) -> tuple[list[Membership], dict[str, str | None] | None]:
        """Members joined now, and every membership whose event is at or after ``since``
        (with the state before the event at ``since`` for the latter, the members joined
        then: push evaluation runs behind the stream), with each row's display name
        (``contains_display_name``), in one indexed read. The names are None for a room from
        before migration 0340 whose rows may still lack them (``directory_flags_known``
        is 0 until ``user_directory.backfill`` filled them): read its member events."""
        rows = await self.db.fetchall(
            "SELECT m.room_nid, m.user_id, m.membership, m.event_nid, m.stream_ordering,"
            " m.displayname, r.directory_flags_known FROM room_memberships m"
            " JOIN rooms r ON r.room_nid = m.room_nid WHERE m.room_nid = $1"
            " AND (m.membership = 'join' OR m.stream_ordering >= $2)",
            room_nid,
            since,
        )
        members = [Membership(int(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in rows]
        if any(not r[6] for r in rows):
            return members, None
        return members, {str(r[1]): (None if r[5] is None else str(r[5])) for r in rows}

    async def membership_changed_after(self, room_nid: int, position: int) -> bool:
        """Whether a membership of the room changed after ``position`` (an index probe,
        migration 0405): how a cache of the room's members that another process may have
        outdated, its drop still on the way, checks itself."""
        found = await self.db.fetchval(
            "SELECT 1 FROM room_memberships WHERE room_nid = $1 AND stream_ordering > $2 LIMIT 1",
            room_nid,
            position,
        )
        return found is not None

    async def rooms_with_joined_guests(self) -> list[int]:
        """Rooms where a guest account of this server is joined (guest accounts are
        local by definition). Read at start-up only: see ``GuestReconciler``."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT m.room_nid FROM room_memberships m"
            " JOIN users u ON u.user_id = m.user_id"
            " WHERE m.membership = 'join' AND u.is_guest = 1 ORDER BY m.room_nid"
        )
        return [int(r[0]) for r in rows]

    async def local_users(self, room_nid: int, server_name: str) -> list[str]:
        """Local users joined, invited or knocking: who must be woken for a new event
        (read once per membership change, see ``LocalMembersCache``)."""
        return await self.local_cache.get(
            room_nid, lambda: self._read_local_users(room_nid, server_name)
        )

    async def _read_local_users(self, room_nid: int, server_name: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT user_id FROM room_memberships WHERE room_nid = $1"
            " AND membership IN ('join', 'invite', 'knock') AND user_id LIKE $2",
            room_nid,
            "%:" + server_name,
        )
        suffix = ":" + server_name  # LIKE's "_" matches any character: check exactly
        return [str(r["user_id"]) for r in rows if str(r["user_id"]).endswith(suffix)]

    async def forget(self, room_nid: int, user_id: str) -> None:
        await self.db.execute(
            "UPDATE room_memberships SET forgotten = 1 WHERE room_nid = $1 AND user_id = $2",
            room_nid,
            user_id,
        )

    async def users_sharing_room_with(self, user_id: str) -> set[str]:
        """Everyone joined to at least one room where ``user_id`` is joined (themself included)."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT other.user_id FROM room_memberships mine"
            " JOIN room_memberships other ON other.room_nid = mine.room_nid"
            " WHERE mine.user_id = $1 AND mine.membership = 'join'"
            " AND other.membership = 'join'",
            user_id,
        )
        return {str(r[0]) for r in rows}

    async def servers_sharing_room_with(self, user_id: str) -> set[str]:
        """Server names of everyone joined to a room where ``user_id`` is joined."""
        return {u.partition(":")[2] for u in await self.users_sharing_room_with(user_id)}

    async def joined_servers(self, room_nid: int) -> set[str]:
        """Server names with at least one joined member in the room. The database cuts
        the user ids down to distinct server names (everything after the first colon,
        ports included): one index probe per server, not a row per member
        (``joined_servers_sql``), as every local join asks (presence on join)."""
        rows = await self.db.fetchall(joined_servers_sql(self.db.engine), room_nid)
        return {str(r[0]) for r in rows}

    async def has_joined_on(self, room_nid: int, server_name: str) -> bool:
        """Whether a user of ``server_name`` is joined to the room: at most one row read
        (the suffix compared exactly: ``LIKE`` is case-blind on SQLite and ``_`` a
        wildcard), so asking costs the same at 10 or 10,000 members."""
        suffix = ":" + server_name
        row = await self.db.fetchval(
            "SELECT 1 FROM room_memberships WHERE room_nid = $1 AND membership = 'join'"
            " AND substr(user_id, length(user_id) - $3 + 1) = $2 LIMIT 1",
            room_nid,
            suffix,
            len(suffix),
        )
        return row is not None

    async def joined_counts(self, room_nids: Sequence[int]) -> dict[int, int]:
        """room nid -> number of joined members."""
        if not room_nids:
            return {}
        rows = await self.db.fetchall(
            "SELECT room_nid, COUNT(*) FROM room_memberships WHERE membership = 'join'"
            f" AND room_nid IN ({placeholders(len(room_nids))}) GROUP BY room_nid",
            *room_nids,
        )
        return {int(r[0]): int(r[1]) for r in rows}

    async def membership_changes(
        self, room_nids: Sequence[int], since: int, upto: int
    ) -> list[Membership]:
        """Current memberships in ``room_nids`` whose event is in ``(since, upto]``."""
        out: list[Membership] = []
        if upto <= since:
            return out  # an empty range: no statement
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
