"""Deleting history: table ``history_purges``, and the batched deletes of a
history purge, a room purge and an account erasure across the room tables.

Every method here works on one batch inside the caller's transaction (or
opens a short one): a purge of millions of events is many small
transactions, never one that holds locks for minutes. Rows are removed
children first (push actions, relations, search index, redactions, edges,
then the event), so PostgreSQL's foreign keys hold after every batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.model import Event
from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders

BATCH = 500


@dataclass(frozen=True, slots=True)
class PurgeRecord:
    purge_id: str
    room_id: str
    status: str  # active | complete | failed
    error: str
    started_ts: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """An event at or before a purge point: deleted, or kept and taken off the timeline."""

    event_nid: int
    event_id: str
    is_state: bool
    sender: str


@dataclass(frozen=True, slots=True)
class PurgePoint:
    """Events with (depth, stream_ordering) <= (depth, stream) are purged."""

    depth: int
    stream: int


class PurgeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------ records

    async def save(self, r: PurgeRecord) -> None:
        await self.db.execute(
            "INSERT INTO history_purges (purge_id, room_id, status, error, started_ts)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (purge_id) DO UPDATE SET"
            " status = excluded.status, error = excluded.error",
            r.purge_id,
            r.room_id,
            r.status,
            r.error,
            r.started_ts,
        )

    async def get(self, purge_id: str) -> PurgeRecord | None:
        row = await self.db.fetchone(
            "SELECT purge_id, room_id, status, error, started_ts FROM history_purges"
            " WHERE purge_id = $1",
            purge_id,
        )
        if row is None:
            return None
        return PurgeRecord(str(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]))

    async def fail_interrupted(self) -> None:
        """At start-up: a purge still 'active' was cut short by a restart."""
        await self.db.execute(
            "UPDATE history_purges SET status = 'failed',"
            " error = 'interrupted by a server restart' WHERE status = 'active'"
        )

    # -------------------------------------------------- finding the point

    async def point_of_event(self, room_nid: int, event_id: str) -> tuple[int, int | None] | None:
        """(depth, stream_ordering) of an event of this room, or None."""
        row = await self.db.fetchone(
            "SELECT depth, stream_ordering FROM events WHERE room_nid = $1 AND event_id = $2",
            room_nid,
            event_id,
        )
        if row is None:
            return None
        return int(row[0]), None if row[1] is None else int(row[1])

    async def point_before_ts(self, room_nid: int, ts: int) -> PurgePoint | None:
        """The purge point for "older than ``ts``": the timeline event that arrived just
        before the first one sent at or after ``ts``. Bounded by that first newer
        event, a single event claiming an old timestamp (a peer's clock, or a lie)
        cannot pull the point forward over recent history."""
        first_new = await self.db.fetchval(
            "SELECT MIN(stream_ordering) FROM events WHERE room_nid = $1"
            " AND origin_server_ts >= $2 AND stream_ordering IS NOT NULL",
            room_nid,
            ts,
        )
        if first_new is None:
            row = await self.db.fetchone(
                "SELECT depth, stream_ordering FROM events WHERE room_nid = $1"
                " AND stream_ordering IS NOT NULL"
                " ORDER BY depth DESC, stream_ordering DESC LIMIT 1",
                room_nid,
            )
        else:
            row = await self.db.fetchone(
                "SELECT depth, stream_ordering FROM events WHERE room_nid = $1"
                " AND stream_ordering < $2 AND origin_server_ts < $3"
                " ORDER BY stream_ordering DESC LIMIT 1",
                room_nid,
                int(first_new),
                ts,
            )
        return None if row is None else PurgePoint(int(row[0]), int(row[1]))

    async def candidates(self, room_nid: int, point: PurgePoint, after_nid: int) -> list[Candidate]:
        """The next batch of events at or before ``point``, by nid. Never a forward
        extremity (new events cite them), never a state event already taken off
        the timeline (nothing left to do for it)."""
        rows = await self.db.fetchall(
            "SELECT e.event_nid, e.event_id, e.state_key, e.sender FROM events e"
            " WHERE e.room_nid = $1 AND e.event_nid > $2"
            " AND (e.depth < $3 OR (e.depth = $3 AND e.stream_ordering <= $4))"
            " AND (e.stream_ordering IS NOT NULL OR e.state_key IS NULL)"
            " AND NOT EXISTS (SELECT 1 FROM forward_extremities f"
            "   WHERE f.room_nid = e.room_nid AND f.event_nid = e.event_nid)"
            f" ORDER BY e.event_nid LIMIT {BATCH}",
            room_nid,
            after_nid,
            point.depth,
            point.stream,
        )
        return [Candidate(int(r[0]), str(r[1]), r[2] is not None, str(r[3])) for r in rows]

    # ------------------------------------------------------------ deleting

    async def _drop_derived(self, q: Queries, nids: Sequence[int]) -> None:
        """Rows that exist only because of these events (not the events themselves)."""
        marks = placeholders(len(nids))
        search_column = "rowid" if self.db.engine == "sqlite" else "event_nid"
        await q.execute(f"DELETE FROM event_push_actions WHERE event_nid IN ({marks})", *nids)
        await q.execute(f"DELETE FROM event_push_shared WHERE event_nid IN ({marks})", *nids)
        await q.execute(f"DELETE FROM event_search WHERE {search_column} IN ({marks})", *nids)

    async def take_off_timeline(self, q: Queries, nids: Sequence[int]) -> None:
        """Kept events (state the room graph needs, or local events an admin kept)
        leave the timeline: no stream position, so no /messages, /sync or /context."""
        if not nids:
            return
        await self._drop_derived(q, nids)
        await q.execute(
            "UPDATE events SET purged_stream = stream_ordering, stream_ordering = NULL"
            f" WHERE event_nid IN ({placeholders(len(nids))}) AND stream_ordering IS NOT NULL",
            *nids,
        )

    async def delete_events(self, q: Queries, events: Sequence[tuple[int, str]]) -> None:
        """Delete these (nid, id) events and everything derived from them. Edges of
        remaining events that name them go too: the timeline then has no gap there,
        so /messages does not try to backfill the purged history again."""
        if not events:
            return
        nids = [nid for nid, _ in events]
        ids = [event_id for _, event_id in events]
        marks = placeholders(len(nids))
        await self._drop_derived(q, nids)
        await q.execute(f"DELETE FROM event_relations WHERE event_nid IN ({marks})", *nids)
        await q.execute(f"DELETE FROM redactions WHERE redaction_event_nid IN ({marks})", *nids)
        await q.execute(f"DELETE FROM event_edges WHERE event_nid IN ({marks})", *nids)
        await q.execute(f"DELETE FROM event_edges WHERE prev_event_id IN ({marks})", *ids)
        await q.execute(f"DELETE FROM event_txn_ids WHERE event_id IN ({marks})", *ids)
        await q.execute(f"DELETE FROM events WHERE event_nid IN ({marks})", *nids)

    # ------------------------------------------------------- a whole room

    async def drop_room_pointers(self, q: Queries, room_nid: int) -> None:
        """The rows that pin a room's events (current state, members, extremities)."""
        for table in ("forward_extremities", "current_state", "room_memberships"):
            await q.execute(f"DELETE FROM {table} WHERE room_nid = $1", room_nid)

    async def room_event_batch(self, room_nid: int) -> list[tuple[int, str]]:
        rows = await self.db.fetchall(
            "SELECT event_nid, event_id FROM events WHERE room_nid = $1"
            f" ORDER BY event_nid DESC LIMIT {BATCH}",
            room_nid,
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    async def room_state_group_batch(self, room_nid: int) -> list[int]:
        """Newest first: a group's children (higher ids) go before it."""
        rows = await self.db.fetchall(
            "SELECT state_group FROM state_groups WHERE room_nid = $1"
            f" ORDER BY state_group DESC LIMIT {BATCH}",
            room_nid,
        )
        return [int(r[0]) for r in rows]

    async def delete_state_groups(self, q: Queries, groups: Sequence[int]) -> None:
        if not groups:
            return
        marks = placeholders(len(groups))
        await q.execute(f"DELETE FROM state_group_entries WHERE state_group IN ({marks})", *groups)
        await q.execute(f"DELETE FROM state_groups WHERE state_group IN ({marks})", *groups)

    async def delete_room_row(self, q: Queries, room_nid: int, room_id: str) -> None:
        """The room itself and what is keyed by its id: aliases, receipts, relations
        left without events, sliding-sync bookkeeping."""
        await q.execute("DELETE FROM event_relations WHERE room_nid = $1", room_nid)
        await q.execute("DELETE FROM event_push_actions WHERE room_nid = $1", room_nid)
        await q.execute("DELETE FROM event_push_shared WHERE room_nid = $1", room_nid)
        await q.execute("DELETE FROM push_member_spans WHERE room_nid = $1", room_nid)
        await q.execute("DELETE FROM room_aliases WHERE room_nid = $1", room_nid)
        await q.execute("DELETE FROM receipts WHERE room_id = $1", room_id)
        await q.execute("DELETE FROM sliding_sync_rooms WHERE room_id = $1", room_id)
        await q.execute("DELETE FROM rooms WHERE room_nid = $1", room_nid)

    # ------------------------------------------------------------- erasure

    async def events_sent_by(self, sender: str, after_nid: int) -> list[int]:
        rows = await self.db.fetchall(
            "SELECT event_nid FROM events WHERE sender = $1 AND event_nid > $2"
            f" ORDER BY event_nid LIMIT {BATCH}",
            sender,
            after_nid,
        )
        return [int(r[0]) for r in rows]

    async def store_pruned(self, q: Queries, pruned: Sequence[tuple[int, Event]]) -> None:
        """Replace stored PDUs by their pruned form, and drop their search rows and
        relations (a pruned event has no body and no m.relates_to)."""
        if not pruned:
            return
        await q.executemany(
            "UPDATE events SET json = $1 WHERE event_nid = $2",
            [(encode_canonical_json(ev.pdu).decode(), nid) for nid, ev in pruned],
        )
        nids = [nid for nid, _ in pruned]
        marks = placeholders(len(nids))
        search_column = "rowid" if self.db.engine == "sqlite" else "event_nid"
        await q.execute(f"DELETE FROM event_search WHERE {search_column} IN ({marks})", *nids)
        await q.execute(f"DELETE FROM event_relations WHERE event_nid IN ({marks})", *nids)


async def all_room_nids(db: Database) -> list[int]:
    """Every room this server holds, for the retention pass."""
    rows = await db.fetchall("SELECT room_nid FROM rooms ORDER BY room_nid")
    return [int(r[0]) for r in rows]
