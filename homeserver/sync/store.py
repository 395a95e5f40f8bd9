"""Read-only queries /sync needs over ``room_memberships`` beyond the room service's own.

Each is one indexed read: member counts and heroes for the room
``summary``, and the rooms a user left (``include_leave``). Membership
changes in a stream range (device-list ``changed``/``left``) are the
membership store's, since the room service needs them too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from homeserver.push.actions_store import counted_rows, main_read_receipts
from homeserver.rooms.store.membership_store import (
    MEMBERSHIP_COLUMNS,
    Membership,
    membership_from_row,
    user_rooms,
)
from homeserver.storage.database import Database
from homeserver.storage.set_statement import SetStatement
from homeserver.storage.sql import placeholders

_COLS = MEMBERSHIP_COLUMNS
_EVENTS_HEAD = "(SELECT position FROM stream_positions WHERE stream_name = 'events')"


# Every stream head a sync token holds but typing (in memory), read in ONE statement:
# on PostgreSQL each statement is a round trip, and a /sync used to read them one by
# one (five per sync, a quarter of an incremental sync's statements). One statement
# also reads them all from one snapshot. The tables are the streams' own
# (rooms/store/events_store.py, e2ee/streams.py, userdata/streams.py,
# rooms/ephemeral/receipts_store.py); their ``current`` functions read the same rows.
_STREAM_HEADS = (
    "SELECT (SELECT position FROM stream_positions WHERE stream_name = 'events') AS events,"
    " (SELECT pos FROM e2e_stream_heads WHERE stream = 'device_lists') AS device_lists,"
    " (SELECT pos FROM e2e_stream_heads WHERE stream = 'to_device') AS to_device,"
    " (SELECT pos FROM user_data_streams WHERE stream = 'account_data') AS account_data,"
    " (SELECT pos FROM receipts_stream WHERE id = 1) AS receipts,"
    " (SELECT pos FROM user_data_streams WHERE stream = 'presence') AS presence"
)
# The same, with what a /sync request needs to know of its own user and device, in
# the same statement (a round trip each on PostgreSQL, and a woken long-poll read them
# every time although they rarely change): whether the device peeks into any room
# (MSC2753; the peeks themselves are read only then), the user's own presence state
# (``set_presence`` writes only when it differs), and the device's one-time key counts
# and unused fallback key types (``DeviceKeysStore.sync_key_counts``'s two reads, as
# rows of their own: kind 1 and 2; the heads are the row of kind 0). And the newest
# position at which a partial-state room's state became whole (``completed``): a sync
# reads which rooms those were only when that is past its token, almost never (the
# table is federation's, ``federation/partial_state_store.py``; an index max here is a
# statement less on every woken sync).
_SYNC_HEADS = (
    "SELECT 0 AS kind, '' AS name, 0 AS n, "
    + _STREAM_HEADS.removeprefix("SELECT ")
    + ", CASE WHEN EXISTS (SELECT 1 FROM room_peeks WHERE user_id = $1 AND device_id = $2)"
    " THEN 1 ELSE 0 END AS peeking, (SELECT state FROM presence WHERE user_nid = $3)"
    " AS own_presence,"
    " (SELECT MAX(stream_ordering) FROM partial_state_completed) AS completed"
    " UNION ALL SELECT 1, algorithm, COUNT(*), 0, 0, 0, 0, 0, 0, 0, NULL, NULL"
    " FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm"
    " UNION ALL SELECT 2, algorithm, 0, 0, 0, 0, 0, 0, 0, 0, NULL, NULL"
    " FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2 AND used = 0"
)


# With the user's rooms, their timelines (an initial sync's next read, a round trip on
# PostgreSQL): the newest ``$4`` events up to the events head of this snapshot of each
# joined room, and whether a relation points at each (as ``_CHILDREN``: the sync then
# looks up bundled aggregations only for those, a round trip saved when none has any),
# never backfilled history (its negative positions do not follow the stream's order), as
# ``EventsStore.latest_in_rooms`` reads them. Rows of kind 13: ``name`` the event id,
# ``n`` the room, ``events`` the event nid, ``device_lists`` the position,
# ``own_presence`` 'children' or ''. Each room's rows are one backward range of its
# ``(room_nid, stream_ordering)`` index: on PostgreSQL a LATERAL subquery with its LIMIT;
# SQLite has no LATERAL, so there the range starts at the position of the room's
# ``$4``-th newest event (``cutoff``, read from the same index; 1 when it has fewer).
# (The cutoff's range join on PostgreSQL was planned over the whole stream's index,
# every room's events after the cutoff; as row comparisons, on both engines over every
# event of the room.)
_ROOM_EVENT_COLS = (
    " UNION ALL SELECT 13, e.event_id, e.room_nid, e.event_nid, e.stream_ordering,"
    " 0, 0, 0, 0, 0,"
    " CASE WHEN EXISTS (SELECT 1 FROM event_relations r WHERE r.relates_to_id = e.event_id)"
    " THEN 'children' ELSE '' END, NULL"
)
_JOINED_M = "room_memberships m WHERE m.user_id = $1 AND m.membership = 'join'"


def _in_room_range(alias: str) -> str:
    """``alias``'s events of room ``m.room_nid`` from the stream's start to its head."""
    return (
        f"{alias}.room_nid = m.room_nid AND {alias}.stream_ordering > 0"
        f" AND {alias}.stream_ordering <= {_EVENTS_HEAD}"
    )


# The LATERAL's room is a range of one room, ordered by room and position: as an
# equality, its generic plan (a prepared statement's after five runs) read the whole
# stream's index backwards, keeping the room's events, when one room held most events
# (every event since a quiet room's newest); only the room's own index gives this order.
_ROOM_EVENTS_PG = (
    f"{_ROOM_EVENT_COLS} FROM room_memberships m CROSS JOIN LATERAL (SELECT event_id,"
    " room_nid, event_nid, stream_ordering FROM events e WHERE e.room_nid >= m.room_nid"
    " AND e.room_nid <= m.room_nid AND e.stream_ordering > 0"
    f" AND e.stream_ordering <= {_EVENTS_HEAD}"
    " ORDER BY e.room_nid DESC, e.stream_ordering DESC LIMIT $4) AS e"
    " WHERE m.user_id = $1 AND m.membership = 'join'"
)
_ROOM_EVENTS_SQLITE = (
    f"{_ROOM_EVENT_COLS} FROM (SELECT m.room_nid, COALESCE((SELECT c.stream_ordering"
    f" FROM events c WHERE {_in_room_range('c')} ORDER BY c.stream_ordering DESC"
    f" LIMIT 1 OFFSET $4 - 1), 1) AS cutoff FROM {_JOINED_M}) AS j"
    " JOIN events e ON e.room_nid = j.room_nid AND e.stream_ordering >= j.cutoff"
    f" AND e.stream_ordering <= {_EVENTS_HEAD}"
)


@dataclass(frozen=True, slots=True)
class StreamHeads:
    """The committed head of each stream that lives in the database."""

    events: int
    device_lists: int
    # Not a token position: to-device positions in a token are per device (see
    # user_sections.to_device); the head only says whether any message came since.
    to_device: int
    account_data: int
    receipts: int
    presence: int
    # Read with the heads by ``sync_heads`` only (``stream_heads`` leaves the defaults).
    peeking: bool = False
    own_presence: str | None = None
    # (one-time key counts by algorithm, unused fallback key types); None: not read.
    key_counts: tuple[dict[str, int], list[str]] | None = None
    # The newest events position at which a partial-state room became whole (0: none);
    # None: not read.
    completed: int | None = None


# An incremental sync's memberships in ONE statement (they were three: the user's joined
# rooms, the user's memberships changed in the range, and every membership changed in
# the range in the rooms joined or left, which presence and device lists need). Part 2
# reads a superset of those rooms (every joined room, every room left in the range);
# the builder keeps the rows of the rooms it answers for. Part 0 (a row per joined
# room, 200 for a user in 200 rooms, on every sync) leaves out the user id and the
# membership, which the reader knows: a fifth less of the statement's time on SQLite.
# Each part is a FROM clause, projected by the statement that uses it: a UNION ALL
# wrapped in an outer SELECT to reshape it cost SQLite another quarter.
_PART_JOINED = "FROM room_memberships WHERE user_id = $1 AND membership = 'join'"
_PART_OWN_MOVES = (
    "FROM room_memberships WHERE user_id = $1"
    " AND stream_ordering > $2 AND stream_ordering <= $3 AND forgotten = 0"
)
_PART_ROOM_MOVES = (
    "FROM room_memberships WHERE stream_ordering > $2 AND stream_ordering <= $3"
    " AND room_nid IN (SELECT room_nid FROM room_memberships WHERE user_id = $1"
    " AND (membership = 'join' OR (membership IN ('leave', 'ban') AND stream_ordering > $2"
    " AND stream_ordering <= $3 AND forgotten = 0)))"
)
# Part 3: the newest ``$4`` events in ``(since, upto]`` of each room the user is joined
# to, and whether any relation points at each (a /sync then looks up bundled
# aggregations only for those): which rooms have news and their timelines, in the same
# statement (it was one of its own, a round trip on PostgreSQL and a thread hand-off on
# SQLite). A window over the range, not a branch per room. Its rows share the other
# parts' columns: ``user_id`` holds the event id and ``membership`` 'children' or ''.
# In ``_SYNC_HEADS_AND_MEMBERSHIPS`` the rooms are its ``news_rooms`` (the joined rooms
# with events in the range, found there already): the range is then looked up in the
# rooms with news only, not in every joined room (200 index probes on every woken sync
# of a user in 200 rooms, for one message).
_CHILDREN = (
    "CASE WHEN EXISTS (SELECT 1 FROM event_relations r"
    " WHERE r.relates_to_id = w.event_id) THEN 'children' ELSE '' END"
)


def _new_events(rooms: str) -> str:
    """Part 3's FROM clause, over the events in the range of the rooms ``rooms`` selects."""
    return (
        "FROM (SELECT room_nid, event_nid, stream_ordering,"
        " event_id, ROW_NUMBER() OVER (PARTITION BY room_nid ORDER BY stream_ordering DESC)"
        " AS rn FROM events WHERE stream_ordering > $2 AND stream_ordering <= $3"
        f" AND room_nid IN ({rooms})) AS w WHERE rn <= $4"
    )


_PART_NEW_EVENTS = _new_events(f"SELECT room_nid {_PART_JOINED}")
# Rows: 10 + part, room_nid, user_id, membership, event_nid, stream_ordering (part 0:
# no user id nor membership; ``_PARTS_SHAPE``).
_USER_MEMBERSHIPS = (
    f"SELECT 10 AS kind, room_nid, NULL AS user_id, NULL AS membership, event_nid,"
    f" stream_ordering {_PART_JOINED}"
    f" UNION ALL SELECT 11, {_COLS} {_PART_OWN_MOVES}"
    f" UNION ALL SELECT 12, {_COLS} {_PART_ROOM_MOVES}"
)
_USER_MEMBERSHIPS_AND_EVENTS = (
    _USER_MEMBERSHIPS
    + f" UNION ALL SELECT 13, room_nid, event_id, {_CHILDREN}, event_nid, stream_ordering"
    f" {_PART_NEW_EVENTS}"
)


# A woken long-poll's heads and memberships (with the new events) in ONE statement: it
# needs both at once, and the memberships' range ends at the events head read here,
# from the same snapshot. Parameters: $1 user, $2 device, $3 user nid (the heads'),
# $4 since, $5 limit. The membership rows follow the heads' columns: kind 10 + part,
# ``name`` the user (or event) id, ``n`` the room, ``events`` the event nid,
# ``device_lists`` the stream position, ``own_presence`` the membership.
def _as_heads_row(part: int, cols: tuple[str, str, str, str, str], from_clause: str) -> str:
    """A membership part's branch of ``_SYNC_HEADS_AND_MEMBERSHIPS``: its columns
    (room nid, user id, membership, event nid, position) in the heads' shape."""
    room, user, membership, event, position = cols
    where = from_clause.replace("$4", "$5").replace("$3", _EVENTS_HEAD).replace("$2", "$4")
    return (
        f" UNION ALL SELECT {10 + part}, {user}, {room}, {event}, {position},"
        f" 0, 0, 0, 0, 0, {membership}, NULL {where}"
    )


# Part 4: the unread counts (without threads: ``NotificationService.unread_counts``) of
# the joined rooms with events in the range, and the push evaluator's cursor (kind 4),
# from the statement's snapshot: exact when it has reached the events head read here
# (``_Rows.counts``), and then a woken long-poll's counts statement (and its wait for
# the evaluator) is saved. ``news``: those rooms, from the range (few events; CROSS JOIN
# keeps SQLite from probing the range once per joined room), with each one's read
# position, computed once (a CTE read twice is materialized by both engines). The rows
# counted after it are the push store's (``counted_rows``: unqualified, so ``news_nid``).
_READ_POS = (
    f"COALESCE((SELECT MAX(re.stream_ordering) {main_read_receipts('= r.room_id')}), 0) AS pos"
)
_NEWS = (
    "WITH news_rooms AS (SELECT DISTINCT e.room_nid FROM events e"
    " CROSS JOIN room_memberships m WHERE e.stream_ordering > $4"
    f" AND e.stream_ordering <= {_EVENTS_HEAD} AND m.room_nid = e.room_nid"
    " AND m.user_id = $1 AND m.membership = 'join'),"
    f" news AS (SELECT n.room_nid AS news_nid, {_READ_POS}"
    " FROM news_rooms n JOIN rooms r ON r.room_nid = n.room_nid) "
)
_COUNTED_AFTER_READ = counted_rows(
    "room_nid = n.news_nid AND stream_ordering > n.pos", "room_nid, notify, highlight", "news n"
)
_PART_COUNTS = (
    " UNION ALL SELECT 14, '', u.room_nid, CAST(SUM(u.notify) AS BIGINT),"
    " CAST(SUM(u.highlight) AS BIGINT), 0, 0, 0, 0, 0, NULL, NULL"
    f" FROM {_COUNTED_AFTER_READ} GROUP BY u.room_nid"
    " UNION ALL SELECT 4, '', position, 0, 0, 0, 0, 0, 0, 0, NULL, NULL"
    " FROM stream_positions WHERE stream_name = 'push_evaluated'"
)
_MEMBER_COLS = ("room_nid", "user_id", "membership", "event_nid", "stream_ordering")
# An initial sync's heads and the user's rooms (their joins, invites and knocks, as
# ``MembershipStore.rooms_for_user`` reads them: kind 11) in ONE statement: the two
# first reads of every initial sync, a round trip each on PostgreSQL and a thread
# hand-off each on SQLite.
_SYNC_HEADS_AND_ROOMS = _SYNC_HEADS + _as_heads_row(
    1, _MEMBER_COLS, user_rooms("'join', 'invite', 'knock'")
)
# With its timelines, every joined room's unread counts (``_PART_COUNTS`` from each
# one's read position), exact as for a woken sync: the initial sync's counts statement
# saved too. Left out (with the read positions) when the request wants them per thread:
# those are read on their own.
_JOINED_NEWS = (
    f"WITH news AS (SELECT m.room_nid AS news_nid, {_READ_POS} FROM room_memberships m"
    " JOIN rooms r ON r.room_nid = m.room_nid WHERE m.user_id = $1 AND m.membership = 'join') "
)
_SYNC_HEADS_ROOMS_AND_NEWEST = {
    (engine, counts): (_JOINED_NEWS if counts else "")
    + _SYNC_HEADS_AND_ROOMS
    + events
    + (_PART_COUNTS if counts else "")
    for engine, events in (("postgres", _ROOM_EVENTS_PG), ("sqlite", _ROOM_EVENTS_SQLITE))
    for counts in (True, False)
}
_SYNC_HEADS_AND_MEMBERSHIPS = (
    _NEWS
    + _SYNC_HEADS
    + _as_heads_row(0, ("room_nid", "NULL", "NULL", "event_nid", "stream_ordering"), _PART_JOINED)
    + _as_heads_row(1, _MEMBER_COLS, _PART_OWN_MOVES)
    + _as_heads_row(2, _MEMBER_COLS, _PART_ROOM_MOVES)
    + _as_heads_row(
        3,
        ("room_nid", "event_id", _CHILDREN, "event_nid", "stream_ordering"),
        _new_events("SELECT room_nid FROM news_rooms"),
    )
    + _PART_COUNTS
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """One of a room's newest events in a sync's range (``user_memberships``)."""

    room_nid: int
    event_nid: int
    stream_ordering: int
    event_id: str
    # Whether a relation points at it (else its bundled aggregations are empty).
    has_children: bool


# Room nid -> (notifications, highlights) unread without threads.
Counts = dict[int, tuple[int, int]]


@dataclass(frozen=True, slots=True)
class RoomsNewest:
    """What an initial sync reads of its joined rooms with its heads and rooms."""

    # Each joined room's newest events up to the events head, newest first.
    events: list[NewEvent]
    # Every joined room's, when exact up to the events head (the push cursor had reached
    # it in the same snapshot); None otherwise.
    counts: Counts | None


@dataclass(frozen=True, slots=True)
class UserMemberships:
    """What an incremental sync reads of ``room_memberships``, in one statement."""

    # The user's joined rooms (``MembershipStore.rooms_for_user``), by room nid.
    joined: list[Membership]
    # The user's memberships whose event is in the range (``changed_since``).
    changed: list[Membership]
    # Everyone's memberships whose event is in the range, in the rooms the user is
    # joined to or left in the range (``membership_changes`` of a superset of rooms).
    moves: list[Membership]
    # The newest ``limit`` events in the range of each joined room that has any, newest
    # first (empty when no limit was asked for).
    new_events: list[NewEvent]
    # Every joined room's with events in the range, when exact up to the events head
    # read with them (the push cursor had reached it in the same snapshot); None
    # otherwise, or not read.
    counts: Counts | None = None


class SyncStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # The 20 long-polls one message wakes read this in the same turn, and most of
        # the 20 they are followed by read their heads in a few turns: one statement
        # for all the calls of a turn on PostgreSQL (storage/set_statement.py).
        self._woken = SetStatement(
            db, _SYNC_HEADS_AND_MEMBERSHIPS, ("text", "text", "bigint", "bigint", "bigint")
        )
        self._sync_heads = SetStatement(db, _SYNC_HEADS, ("text", "text", "bigint"))

    async def stream_heads(self) -> StreamHeads:
        """Every database stream's current position, in one statement."""
        return _heads(await self.db.fetchone(_STREAM_HEADS))

    async def sync_heads(self, user_id: str, device_id: str, user_nid: int) -> StreamHeads:
        """``stream_heads``, with whether this device peeks into a room, the user's
        presence state and the device's key counts, in one statement."""
        return _sync_heads(await self._sync_heads.fetchall(user_id, device_id, user_nid))

    async def sync_heads_and_rooms(
        self, user_id: str, device_id: str, user_nid: int, limit: int = 0, counts: bool = True
    ) -> tuple[StreamHeads, list[Membership], RoomsNewest | None]:
        """``sync_heads`` and the user's joins, invites and knocks by room nid (an
        initial sync's two first reads), in one statement; with a ``limit``, each joined
        room's newest ``limit`` events up to the events head and, unless ``counts`` is
        false (the request wants them per thread), its unread counts too (else None):
        its timelines' and counts' reads, in the same statement."""
        if limit > 0:
            sql = _SYNC_HEADS_ROOMS_AND_NEWEST[self.db.engine, counts]
            rows = await self.db.fetchall(sql, user_id, device_id, user_nid, limit)
        else:
            rows = await self.db.fetchall(_SYNC_HEADS_AND_ROOMS, user_id, device_id, user_nid)
        read = _walk(rows, user_id)
        heads = _sync_heads(read.head_rows)
        rooms = sorted(read.parts[1], key=_by_room)
        if limit <= 0:
            return heads, rooms, None
        read.new_events.sort(key=_newest_first)
        joined = (m.room_nid for m in rooms if m.membership == "join")
        return heads, rooms, RoomsNewest(read.new_events, read.counts(heads, joined))

    async def sync_heads_and_memberships(
        self, user_id: str, device_id: str, user_nid: int, since: int, limit: int
    ) -> tuple[StreamHeads, UserMemberships]:
        """``sync_heads`` and ``user_memberships`` up to the events head read with them
        (a woken long-poll's two first reads), in one statement."""
        rows = await self._woken.fetchall(user_id, device_id, user_nid, since, limit)
        read = _walk(rows, user_id)
        heads = _sync_heads(read.head_rows)
        # The counts of the rooms with news (the joined rooms with events in the range).
        counts = read.counts(heads, (e.room_nid for e in read.new_events))
        return heads, read.memberships(counts)

    async def user_memberships(
        self, user_id: str, since: int, upto: int, limit: int = 0
    ) -> UserMemberships:
        """The user's joined rooms and what moved in ``(since, upto]``, and with a
        ``limit`` each joined room's newest ``limit`` events in it: one statement."""
        if limit > 0 and upto > since:
            rows = await self.db.fetchall(_USER_MEMBERSHIPS_AND_EVENTS, user_id, since, upto, limit)
        else:
            rows = await self.db.fetchall(_USER_MEMBERSHIPS, user_id, since, upto)
        return _walk(rows, user_id, _PARTS_SHAPE).memberships()

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

    async def member_counts_many(self, room_nids: list[int]) -> dict[int, dict[str, int]]:
        """``member_counts`` for many rooms, one statement per 500 rooms."""
        out: dict[int, dict[str, int]] = {n: {} for n in room_nids}
        for start in range(0, len(room_nids), 500):
            chunk = room_nids[start : start + 500]
            rows = await self.db.fetchall(
                "SELECT room_nid, membership, COUNT(*) AS n FROM room_memberships"
                f" WHERE room_nid IN ({placeholders(len(chunk))}) GROUP BY room_nid, membership",
                *chunk,
            )
            for r in rows:
                out[int(r["room_nid"])][str(r["membership"])] = int(r["n"])
        return out

    async def naming_events_many(self, room_nids: list[int]) -> dict[int, tuple[int, ...]]:
        """Per room, the nids of its current ``m.room.name`` and ``m.room.canonical_alias``
        events (none, one or both): one statement per 500 rooms, from the two state keys
        through the current state. (Looking the keys up first cost a statement of its
        own on every sync while no room had one of them: a missing key is not cached.)
        Whether they name the room is in their content, read through the event cache
        (which a redaction updates)."""
        out: dict[int, tuple[int, ...]] = {}
        for start in range(0, len(room_nids), 500):
            chunk = room_nids[start : start + 500]
            rows = await self.db.fetchall(
                "SELECT c.room_nid, c.event_nid FROM state_keys k"
                " JOIN current_state c ON c.state_key_nid = k.state_key_nid"
                " WHERE k.event_type IN ('m.room.name', 'm.room.canonical_alias')"
                f" AND k.state_key = '' AND c.room_nid IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for r in rows:
                nid = int(r["room_nid"])
                out[nid] = (*out.get(nid, ()), int(r["event_nid"]))
        return out

    async def hero_candidates_many(
        self, room_nids: list[int], limit: int
    ) -> dict[int, tuple[list[str], list[str]]]:
        """Per room, its first ``limit`` members joined or invited and its first ``limit``
        who left or were banned, oldest first (``summary_cache.heroes_for`` picks a
        reader's heroes from them): one statement per 100 rooms, each room's branch of
        the UNION ALL an indexed read of at most ``limit`` rows per membership class."""
        out: dict[int, tuple[list[str], list[str]]] = {}
        for start in range(0, len(room_nids), 100):
            chunk = room_nids[start : start + 100]
            branches = [
                f"SELECT * FROM (SELECT room_nid, user_id, {rank} AS rank, stream_ordering"
                f" FROM room_memberships WHERE room_nid = ${i + 2}"
                f" AND membership IN ({memberships}) ORDER BY stream_ordering LIMIT $1)"
                f" AS h{i}_{rank}"
                for i in range(len(chunk))
                for rank, memberships in ((0, "'join', 'invite'"), (1, "'leave', 'ban'"))
            ]
            rows = await self.db.fetchall(" UNION ALL ".join(branches), limit, *chunk)
            found: dict[int, dict[int, list[tuple[int, str]]]] = {}
            for r in rows:
                found.setdefault(int(r["room_nid"]), {}).setdefault(int(r["rank"]), []).append(
                    (int(r["stream_ordering"]), str(r["user_id"]))
                )
            for room_nid in chunk:
                ranks = found.get(room_nid, {})
                out[room_nid] = (
                    [u for _, u in sorted(ranks.get(0, []))],
                    [u for _, u in sorted(ranks.get(1, []))],
                )
        return out

    async def left_rooms(self, user_id: str, upto: int) -> list[Membership]:
        """Rooms the user left or was banned from and has not forgotten."""
        rows = await self.db.fetchall(
            f"SELECT {_COLS} FROM room_memberships WHERE user_id = $1"
            " AND membership IN ('leave', 'ban') AND forgotten = 0 AND stream_ordering <= $2",
            user_id,
            upto,
        )
        return [membership_from_row(r) for r in rows]


def _sync_heads(rows: list[Any]) -> StreamHeads:
    """A ``_SYNC_HEADS`` answer: the heads row (kind 0) and the key counts (1 and 2)."""
    row = next(r for r in rows if int(r["kind"]) == 0)
    own = row["own_presence"]
    completed = row["completed"]
    counts = {str(r["name"]): int(r["n"]) for r in rows if int(r["kind"]) == 1}
    fallback = sorted(str(r["name"]) for r in rows if int(r["kind"]) == 2)
    return _heads(
        row,
        peeking=bool(row["peeking"]),
        own_presence=None if own is None else str(own),
        key_counts=(counts, fallback),
        completed=0 if completed is None else int(completed),
    )


@dataclass(frozen=True, slots=True)
class _Rows:
    """The rows of a sync's one statement (``_SYNC_HEADS_AND_MEMBERSHIPS``,
    ``_SYNC_HEADS_ROOMS_AND_NEWEST``, ``_USER_MEMBERSHIPS``), by kind."""

    # The heads' rows (``_sync_heads``), kinds 0 to 2; none in ``_USER_MEMBERSHIPS``.
    head_rows: list[Any]
    # Memberships by part (kind - 10).
    parts: tuple[list[Membership], ...]
    new_events: list[NewEvent]
    # The rooms with a counted row.
    counted: Counts
    # The push evaluator's cursor read with them; -1: not read.
    cursor: int

    def counts(self, heads: StreamHeads, room_nids: Iterable[int]) -> Counts | None:
        """``room_nids``' unread counts as read in the statement, when exact: only when
        the push cursor read with them has reached the events head (``heads``', from the
        same statement) has every event up to it its rows in this snapshot (and a room
        without a counted row nothing unread).
        Else None: they are read on their own, after waiting for the evaluator."""
        if self.cursor < heads.events:
            return None
        return {nid: self.counted.get(nid, (0, 0)) for nid in room_nids}

    def memberships(self, counts: Counts | None = None) -> UserMemberships:
        """As an incremental sync takes them: joins by room nid, new events newest first."""
        joined, changed, moves = self.parts
        joined.sort(key=_by_room)
        self.new_events.sort(key=_newest_first)
        return UserMemberships(joined, changed, moves, self.new_events, counts)


# Where a sync statement's membership rows (and new-event rows) hold the room nid, the
# user (or event) id, the membership (or 'children'), the event nid and the position:
# ``_as_heads_row``'s, and ``_USER_MEMBERSHIPS``'s.
_HEADS_SHAPE = (2, 1, 10, 3, 4)
_PARTS_SHAPE = (1, 2, 3, 4, 5)


def _walk(rows: list[Any], user_id: str, shape: tuple[int, ...] = _HEADS_SHAPE) -> _Rows:
    """A sync statement's rows, by position in one pass: a user in 200 rooms gets 200
    membership rows on every sync, and reading them by column name into tuples and then
    into objects was a third of an incremental sync's CPU. Kinds: below 4 the heads'
    (``_SYNC_HEADS``), 4 the push cursor, 14 a room's counted rows, and in ``shape``
    10 a join of ``user_id`` (no user id nor membership), 11 and 12 a membership, 13 a
    new event."""
    room, user, membership, event, position = shape
    head_rows = []
    parts: tuple[list[Membership], ...] = ([], [], [])
    new_events: list[NewEvent] = []
    counted: Counts = {}
    cursor = -1
    for r in rows:
        kind = r[0]
        if kind == 10:
            parts[0].append(Membership(r[room], user_id, "join", r[event], r[position]))
        elif kind == 13:
            new_events.append(
                NewEvent(r[room], r[event], r[position], r[user], bool(r[membership]))
            )
        elif kind < 4:
            head_rows.append(r)
        elif kind == 4:
            cursor = int(r[2])
        elif kind == 14:
            counted[int(r[2])] = (int(r[3] or 0), int(r[4] or 0))
        else:
            parts[kind - 10].append(
                Membership(r[room], r[user], r[membership], r[event], r[position])
            )
    return _Rows(head_rows, parts, new_events, counted, cursor)


_by_room = attrgetter("room_nid")


def _newest_first(e: NewEvent) -> int:
    return -e.stream_ordering


def _heads(row: Any, **extra: Any) -> StreamHeads:
    """The stream positions of a heads row, plus ``extra`` fields."""
    return StreamHeads(
        events=int(row["events"]),
        device_lists=int(row["device_lists"]),
        to_device=int(row["to_device"]),
        account_data=int(row["account_data"]),
        receipts=int(row["receipts"]),
        presence=int(row["presence"]),
        **extra,
    )
