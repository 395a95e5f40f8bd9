"""Table ``partial_state_rooms``: rooms joined with partial state, until their
whole state is merged (see migration 0390 and ``federation.membership.partial_state``).

Reads that run on every inbound PDU or outbound send ask ``is_partial``: a room
that is known to be complete is remembered as such, so a room that never was
partial costs one query per process, not one per event.

Each marker carries a claim (migration 0450): the process that resyncs the room and
until when; ``claim`` takes it atomically, so among several processes exactly one
resyncs each room.

Table ``partial_state_completed`` (migration 0420): the events-stream position at
which each room's merge committed. /sync reads both (``partial_among``,
``completed_between``): a sync that does not lazy-load members leaves partial rooms
out, and sends a room completed after its token as newly joined; a leave made while
the room was partial (``partial_at``) is left out too, the client never had the room.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Final

from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders

# The bus topic announcing a room marked partial (keys: room nids).
PARTIAL_STATE_MARKED: Final = "partial_state_marked"
# Room nids per statement of the batched reads.
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class PartialRoom:
    room_nid: int
    join_event_id: str
    joined_via: str
    servers_in_room: list[str]
    # The merge adds the missing members to the room's snapshot groups from this id on
    # (those made since the join; a rejoin leaves the earlier ones as they were).
    min_state_group: int = 0


def _string_list(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [s for s in value if isinstance(s, str)] if isinstance(value, list) else []


class PartialStateStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Announces a marked room to the other processes (bound with the signal bus).
        self.publish: Callable[[str, list[str]], None] | None = None
        # Rooms seen complete by this process; a room is only ever marked partial by a
        # join of a room we are not in, in the join's transaction (``marking`` and
        # ``marked`` forget it here and, over the signal bus, in the other processes).
        self._complete: set[int] = set()
        # Markers being written, and a count of marks begun and ended: a read that
        # overlapped one does not remember its rooms as complete.
        self._marking = 0
        self._marks = 0

    def marking(self, room_nid: int) -> None:
        """A marker of ``room_nid`` is about to be written (``mark_in``, in the join's
        transaction): a read meanwhile must not remember the room as complete."""
        self._complete.discard(room_nid)
        self._marking += 1
        self._marks += 1

    def marked(self, room_nid: int) -> None:
        """``marking``'s transaction has ended (committed or not)."""
        self._marking -= 1
        self._marks += 1
        self._complete.discard(room_nid)
        if self.publish is not None:
            # Other processes that saw the room complete (a rejoin) must ask again.
            self.publish(PARTIAL_STATE_MARKED, [str(room_nid)])

    async def mark_in(
        self,
        q: Queries,
        room_nid: int,
        join_event_id: str,
        joined_via: str,
        servers: list[str],
        now_ms: int,
        owner: str = "",
        owner_until_ms: int = 0,
    ) -> None:
        """The marker, claimed by ``owner`` (the joining process, which resyncs it),
        written in the join's own transaction (between ``marking`` and ``marked``):
        the join and its marker commit together or not at all."""
        # Groups made from here on are this join's (the caller holds the room's lock;
        # ids only grow): a rejoin's merge leaves the earlier ones alone. A room still
        # partial (we left and came back before the merge) keeps its first bound: the
        # groups of that first partial stretch lack members too.
        floor = await q.fetchval(
            "SELECT min_state_group FROM partial_state_rooms WHERE room_nid = $1", room_nid
        )
        if floor is None:
            newest = await q.fetchval("SELECT MAX(state_group) FROM state_groups")
            floor = int(newest or 0) + 1
        await q.execute("DELETE FROM partial_state_rooms WHERE room_nid = $1", room_nid)
        await q.execute(
            "INSERT INTO partial_state_rooms"
            " (room_nid, join_event_id, joined_via, servers_in_room, created_ms,"
            " owner, owner_until_ms, min_state_group)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            room_nid,
            join_event_id,
            joined_via,
            json.dumps(sorted(set(servers))),
            now_ms,
            owner,
            owner_until_ms,
            int(floor),
        )

    async def history_groups(self, q: Queries, room_nid: int, min_group: int) -> set[int]:
        """The state groups (``min_group`` or above) of history backfilled while the room
        was partial, and the groups they are built on, but those the timeline's events
        use as well: the state at a gap in the history came whole from ``/state_ids``,
        and the members the merge adds are those at our join, not at that history (a
        member who joined after a message must not be in the state at it). A group the
        timeline shares (history backfilled into a hole after our join, built on the
        join's partial state) is the partial state's and is completed. Backfilled events
        have negative stream positions, the timeline's positive ones."""
        pairs = (
            "SELECT DISTINCT e.state_group, g.prev_group FROM events e"
            " JOIN state_groups g ON g.state_group = e.state_group"
            " WHERE e.room_nid = $1 AND e.state_group >= $2 AND e.stream_ordering {} 0"
        )
        history = await q.fetchall(pairs.format("<"), room_nid, min_group)
        if not history:
            return set()
        timeline = await q.fetchall(pairs.format(">"), room_nid, min_group)

        def groups(rows: list[Any]) -> set[int]:
            return {
                int(v) for r in rows for v in (r["state_group"], r["prev_group"]) if v is not None
            }

        return groups(history) - groups(timeline)

    async def defer_history(
        self, room_nid: int, gap_event_id: str, origin: str, missing: list[str]
    ) -> None:
        """Name the events of the state at a gap in the history that the history is
        stored without (migration 0520): the merge adds them to its snapshot group.
        Written before the history is (a crash in between leaves a row with no history
        to complete, which the merge drops). A gap named again (a second read of the
        same history) keeps the ids named before: the groups stored then lack them."""
        async with self.db.transaction() as q:
            before = await q.fetchval(
                "SELECT missing FROM partial_state_history"
                " WHERE room_nid = $1 AND gap_event_id = $2",
                room_nid,
                gap_event_id,
            )
            if before is not None:
                missing = list(dict.fromkeys([*_string_list(str(before)), *missing]))
            await q.execute(
                "DELETE FROM partial_state_history WHERE room_nid = $1 AND gap_event_id = $2",
                room_nid,
                gap_event_id,
            )
            await q.execute(
                "INSERT INTO partial_state_history (room_nid, gap_event_id, origin, missing)"
                " VALUES ($1, $2, $3, $4)",
                room_nid,
                gap_event_id,
                origin,
                json.dumps(missing),
            )

    async def deferred_history(self, room_nid: int) -> list[tuple[str, str, list[str]]]:
        """(gap event id, origin, missing event ids) of ``defer_history``'s rows."""
        rows = await self.db.fetchall(
            "SELECT gap_event_id, origin, missing FROM partial_state_history"
            " WHERE room_nid = $1 ORDER BY gap_event_id",
            room_nid,
        )
        return [(r["gap_event_id"], r["origin"], _string_list(r["missing"])) for r in rows]

    async def history_after(self, q: Queries, room_nid: int, gap_event_id: str) -> set[int]:
        """The state groups of the backfilled events that follow ``gap_event_id`` (the
        state after the gap, with those events' own changes as deltas on it: their
        snapshot roots are ``StateStore.roots``)."""
        rows = await q.fetchall(
            "SELECT DISTINCT e.state_group FROM event_edges x"
            " JOIN events e ON e.event_nid = x.event_nid"
            " WHERE x.prev_event_id = $1 AND e.room_nid = $2 AND e.stream_ordering < 0"
            " AND e.state_group IS NOT NULL",
            gap_event_id,
            room_nid,
        )
        return {int(r["state_group"]) for r in rows}

    async def clear_history_in(self, q: Queries, room_nid: int) -> None:
        await q.execute("DELETE FROM partial_state_history WHERE room_nid = $1", room_nid)

    def forget_complete(self, keys: list[str] | None) -> None:
        """Rooms marked partial by another process (None: any room): ask again."""
        if keys is None:
            self._complete.clear()
        else:
            self._complete.difference_update(int(k) for k in keys if k.isdigit())

    async def claim(self, room_nid: int, owner: str, now_ms: int, until_ms: int) -> bool:
        """Take (or keep) the resync of a partial room: only if the claim is ``owner``'s
        already or has run out. One statement, so of two processes trying at once one
        wins. False also when the room is no longer partial."""
        row = await self.db.fetchone(
            "UPDATE partial_state_rooms SET owner = $2, owner_until_ms = $4"
            " WHERE room_nid = $1 AND (owner = $2 OR owner_until_ms < $3)"
            " RETURNING room_nid",
            room_nid,
            owner,
            now_ms,
            until_ms,
        )
        return row is not None

    async def renew(self, room_nids: Collection[int], owner: str, until_ms: int) -> None:
        """Extend ``owner``'s claims on these rooms (its resyncs still running)."""
        nids = list(room_nids)
        for start in range(0, len(nids), _CHUNK):
            chunk = nids[start : start + _CHUNK]
            await self.db.execute(
                f"UPDATE partial_state_rooms SET owner_until_ms = $1 WHERE owner = $2"
                f" AND room_nid IN ({placeholders(len(chunk), 3)})",
                until_ms,
                owner,
                *chunk,
            )

    async def get(
        self, room_nid: int, q: Queries | None = None, *, remember: bool = True
    ) -> PartialRoom | None:
        """The room's marker. ``remember=False`` for a room that may have no state yet
        (an invite): it could still be joined with partial state by another process."""
        if room_nid in self._complete:
            return None
        marks = self._marks
        row = await (q or self.db).fetchone(
            "SELECT room_nid, join_event_id, joined_via, servers_in_room, min_state_group"
            " FROM partial_state_rooms WHERE room_nid = $1",
            room_nid,
        )
        if row is None:
            if remember:
                self._remember_complete([room_nid], marks)
            return None
        return PartialRoom(
            int(row["room_nid"]),
            str(row["join_event_id"]),
            str(row["joined_via"]),
            _string_list(str(row["servers_in_room"])),
            int(row["min_state_group"]),
        )

    async def is_partial(self, room_nid: int) -> bool:
        return await self.get(room_nid) is not None

    async def take_all(self, owner: str) -> None:
        """A process that runs alone (no workers) takes every claim: whoever held one
        before is gone (say the server ran with workers before)."""
        await self.db.execute("UPDATE partial_state_rooms SET owner = $1 WHERE owner <> $1", owner)

    async def claimable(self, owner: str, now_ms: int) -> list[PartialRoom]:
        """The partial rooms ``owner`` may take: its own claims (a restarted process)
        and the claims run out (their process died or gave up for now)."""
        rows = await self.db.fetchall(
            "SELECT room_nid, join_event_id, joined_via, servers_in_room, min_state_group"
            " FROM partial_state_rooms WHERE owner = $1 OR owner_until_ms < $2"
            " ORDER BY created_ms",
            owner,
            now_ms,
        )
        return [
            PartialRoom(
                int(r["room_nid"]),
                str(r["join_event_id"]),
                str(r["joined_via"]),
                _string_list(str(r["servers_in_room"])),
                int(r["min_state_group"]),
            )
            for r in rows
        ]

    async def clear_in(self, q: Queries, room_nid: int, position: int) -> None:
        """Inside the transaction that merges the whole state, which took the events
        stream's ``position`` for it (/sync sends the room as new to a token before it)."""
        await q.execute("DELETE FROM partial_state_rooms WHERE room_nid = $1", room_nid)
        await q.execute("DELETE FROM partial_state_completed WHERE room_nid = $1", room_nid)
        await q.execute(
            "INSERT INTO partial_state_completed (room_nid, stream_ordering) VALUES ($1, $2)",
            room_nid,
            position,
        )

    async def partial_among(self, room_nids: Collection[int]) -> set[int]:
        """Which of these rooms, each with a local member joined, are partial now. Rooms
        seen complete are not asked again: a room with a local member joined is never
        marked partial again (only a join to a room we are not in is partial; a rejoin's
        marker is announced to every process), so for /sync, which asks about its
        user's joined rooms, this is mostly no statement."""
        unknown = [n for n in room_nids if n not in self._complete]
        marks = self._marks
        found: set[int] = set()
        for start in range(0, len(unknown), _CHUNK):
            chunk = unknown[start : start + _CHUNK]
            rows = await self.db.fetchall(
                "SELECT room_nid FROM partial_state_rooms"
                f" WHERE room_nid IN ({placeholders(len(chunk))})",
                *chunk,
            )
            found |= {int(r["room_nid"]) for r in rows}
        self._remember_complete([n for n in unknown if n not in found], marks)
        return found

    async def completed_between(self, since: int, upto: int) -> set[int]:
        """Rooms whose whole state was merged after events position ``since`` and at or
        before ``upto`` (an indexed range; empty without a read when nothing moved)."""
        if upto <= since:
            return set()
        rows = await self.db.fetchall(
            "SELECT room_nid FROM partial_state_completed"
            " WHERE stream_ordering > $1 AND stream_ordering <= $2",
            since,
            upto,
        )
        return {int(r["room_nid"]) for r in rows}

    async def partial_at(self, positions: dict[int, int]) -> set[int]:
        """Which rooms were partial at their events position (room nid -> position):
        still partial now, or merged after it. Only /sync's leaves ask (few rooms)."""
        nids = list(positions)
        found: set[int] = set()
        for start in range(0, len(nids), _CHUNK):
            chunk = nids[start : start + _CHUNK]
            marks = placeholders(len(chunk))
            rows = await self.db.fetchall(
                f"SELECT room_nid, NULL AS stream_ordering FROM partial_state_rooms"
                f" WHERE room_nid IN ({marks})"
                " UNION ALL SELECT room_nid, stream_ordering FROM partial_state_completed"
                f" WHERE room_nid IN ({marks})",
                *chunk,
            )
            for r in rows:
                nid, merged = int(r["room_nid"]), r["stream_ordering"]
                if merged is None or int(merged) > positions[nid]:
                    found.add(nid)
        return found

    def _remember_complete(self, room_nids: list[int], marks: int) -> None:
        """Remember rooms read without a marker, unless a marker was being written
        meanwhile (``marks`` is the count when the read began): the read may predate
        its commit."""
        if marks == self._marks and not self._marking:
            self._complete.update(room_nids)

    def completed(self, room_nid: int) -> None:
        self._complete.add(room_nid)

    async def clear(self, room_nid: int) -> None:
        await self.db.execute("DELETE FROM partial_state_rooms WHERE room_nid = $1", room_nid)
        self._complete.add(room_nid)
