"""Tables ``events``, ``event_edges``, ``forward_extremities``, ``stream_positions``,
``redactions`` and ``event_txn_ids``.

An event row changes once at most: when a redaction is applied to it, its
``json`` is pruned to the redacted form and ``redacted_by`` set (migration
0055 says why; ``homeserver.rooms.redactions`` decides when). Loaded events
are cached by nid; that one change invalidates the entry (``forget``), and a
generation counter keeps a read that raced with it from caching the old row.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from homeserver.events.canonical import decode_stored_json, encode_canonical_json
from homeserver.events.derived import canonical_json
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.database import Database, Queries, Row
from homeserver.storage.sql import per_room_bounds, placeholders
from homeserver.streams.tokens import TopoPosition

# The default bound of the cache of loaded events (config ``caches.events``).
DEFAULT_CACHE_SIZE = 5_000
# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are event nids.
EVENTS_CACHE = "events"

T = TypeVar("T")

_COLUMNS = (
    "e.event_nid, e.event_id, e.room_nid, e.stream_ordering, e.state_group, e.outlier,"
    " e.rejected_reason, e.soft_failed, e.prev_state_event_nid, e.json, e.redacted_by,"
    " r.room_version"
)
_FROM = " FROM events e JOIN rooms r ON r.room_nid = e.room_nid"
_ADD_TXN_ID = (
    "INSERT INTO event_txn_ids (user_id, device_id, txn_id, event_id, created_ts)"
    " VALUES ($1, $2, $3, $4, $5)"
)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    event: Event
    event_nid: int
    room_nid: int
    stream_ordering: int | None
    state_group: int | None
    outlier: bool
    rejected_reason: str | None
    soft_failed: bool
    prev_state_event_nid: int | None
    # The applied m.room.redaction (``event.pdu`` is then the redacted form).
    redacted_by: int | None = None
    # The event's client JSON, encoded once (``homeserver.rooms.client_json``); it lives
    # and dies with this object, which the event cache replaces when the row changes.
    client_json: dict[bool, tuple[StoredEvent | None, bytes, int]] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )


def _stored(row: Row) -> StoredEvent:
    version = KNOWN_ROOM_VERSIONS[str(row["room_version"])]
    pdu = decode_stored_json(str(row["json"]), version.strict_canonical_json)
    so = row["stream_ordering"]
    sg = row["state_group"]
    prev = row["prev_state_event_nid"]
    by = row["redacted_by"]
    return StoredEvent(
        event=Event(str(row["event_id"]), pdu, version),
        event_nid=int(row["event_nid"]),
        room_nid=int(row["room_nid"]),
        stream_ordering=None if so is None else int(so),
        state_group=None if sg is None else int(sg),
        outlier=bool(row["outlier"]),
        rejected_reason=row["rejected_reason"],
        soft_failed=bool(row["soft_failed"]),
        prev_state_event_nid=None if prev is None else int(prev),
        redacted_by=None if by is None else int(by),
    )


class EventStore:
    def __init__(self, db: Database, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        self.db = db
        self.cache_size = cache_size
        self._cache: OrderedDict[int, StoredEvent] = OrderedDict()
        self._ids: dict[str, int] = {}
        # Bumped by ``forget``: a read that began before it does not cache its rows.
        self._generation = 0
        # Other processes drop what this one forgets (cache name, keys); None: one process.
        self.publish: Callable[[str, list[str]], None] | None = None

    # ------------------------------------------------------------ writing

    async def next_stream_ordering(self, q: Queries) -> int:
        """Take the next global position inside the persisting transaction."""
        value = await q.fetchval(
            "UPDATE stream_positions SET position = position + 1"
            " WHERE stream_name = 'events' RETURNING position"
        )
        return int(value)

    async def next_stream_orderings(self, q: Queries, count: int) -> int:
        """Take ``count`` consecutive positions at once (a chain of events written in one
        transaction); the last of them."""
        value = await q.fetchval(
            "UPDATE stream_positions SET position = position + $1"
            " WHERE stream_name = 'events' RETURNING position",
            count,
        )
        return int(value)

    async def next_backfill_ordering(self, q: Queries) -> int:
        """The next (negative) position for a backfilled event: below every other."""
        value = await q.fetchval(
            "UPDATE stream_positions SET position = position - 1"
            " WHERE stream_name = 'backfill' RETURNING position"
        )
        return int(value)

    async def promote_outlier(self, q: Queries, row: StoredEvent) -> StoredEvent | None:
        """An outlier (not rejected) becomes backfilled history in place, with the
        position, state group, replaced state event and soft-failure of ``row``;
        ``row`` with the outlier's nid, or None when there is no such outlier."""
        nid = await q.fetchval(
            "UPDATE events SET outlier = 0, stream_ordering = $2, state_group = $3,"
            " prev_state_event_nid = $4, soft_failed = $5"
            " WHERE event_id = $1 AND outlier = 1 AND rejected_reason IS NULL"
            " RETURNING event_nid",
            row.event.event_id,
            row.stream_ordering,
            row.state_group,
            row.prev_state_event_nid,
            int(row.soft_failed),
        )
        return None if nid is None else replace(row, event_nid=int(nid))

    async def insert_event(self, q: Queries, row: StoredEvent) -> StoredEvent:
        """Insert ``row`` as a new event; ``row`` with the nid the database gave it
        (``row.event_nid`` is not read: pass 0). The persister hands the same value on
        to its hooks and caches, so what they see is what was written."""
        event = row.event
        nid = await q.fetchval(
            "INSERT INTO events (event_id, room_nid, event_type, state_key, sender, depth,"
            " origin_server_ts, stream_ordering, outlier, rejected_reason, soft_failed,"
            " state_group, prev_state_event_nid, json, redacted_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            " RETURNING event_nid",
            event.event_id,
            row.room_nid,
            event.type,
            event.state_key,
            event.sender,
            event.depth,
            event.origin_server_ts,
            row.stream_ordering,
            int(row.outlier),
            row.rejected_reason,
            int(row.soft_failed),
            row.state_group,
            row.prev_state_event_nid,
            canonical_json(event).decode(),
            row.redacted_by,
        )
        return replace(row, event_nid=int(nid))

    async def insert_events(self, q: Queries, rows: Sequence[StoredEvent]) -> list[StoredEvent]:
        """``insert_event`` for many new events (a batch of outliers): one insert
        statement for all, then their nids read back by event id, a statement per
        ``_chunks``; ``rows`` with their nids, in order. The ids must be new."""
        if not rows:
            return []
        await q.executemany(
            "INSERT INTO events (event_id, room_nid, event_type, state_key, sender, depth,"
            " origin_server_ts, stream_ordering, outlier, rejected_reason, soft_failed,"
            " state_group, prev_state_event_nid, json, redacted_by)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            [
                (
                    r.event.event_id,
                    r.room_nid,
                    r.event.type,
                    r.event.state_key,
                    r.event.sender,
                    r.event.depth,
                    r.event.origin_server_ts,
                    r.stream_ordering,
                    int(r.outlier),
                    r.rejected_reason,
                    int(r.soft_failed),
                    r.state_group,
                    r.prev_state_event_nid,
                    canonical_json(r.event).decode(),
                    r.redacted_by,
                )
                for r in rows
            ],
        )
        nids: dict[str, int] = {}
        for chunk in _chunks([r.event.event_id for r in rows]):
            found = await q.fetchall(
                "SELECT event_id, event_nid FROM events"
                f" WHERE event_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            nids.update((str(f[0]), int(f[1])) for f in found)
        return [replace(r, event_nid=nids[r.event.event_id]) for r in rows]

    async def add_edges(self, q: Queries, event_nid: int, prev_event_ids: Sequence[str]) -> None:
        await self.add_edges_many(q, [(event_nid, p) for p in prev_event_ids])

    async def add_edges_many(self, q: Queries, edges: Sequence[tuple[int, str]]) -> None:
        """(event nid, prev event id) rows, in one statement."""
        if edges:
            await q.executemany(
                "INSERT INTO event_edges (event_nid, prev_event_id) VALUES ($1, $2)"
                " ON CONFLICT DO NOTHING",
                edges,
            )

    async def replace_extremities(
        self, q: Queries, room_nid: int, prev_nids: Sequence[int], event_nid: int
    ) -> None:
        """The new event succeeds its prev events: they stop being extremities.
        One statement on PostgreSQL (this runs while the room is held for the write:
        every round trip there is one that concurrent sends into the room wait for),
        two on SQLite, whatever the number of prev events."""
        if self.db.engine == "postgres":
            await q.execute(
                "WITH gone AS (DELETE FROM forward_extremities"
                " WHERE room_nid = $1 AND event_nid = ANY($2::bigint[]))"
                " INSERT INTO forward_extremities (room_nid, event_nid) VALUES ($1, $3)",
                room_nid,
                list(prev_nids),
                event_nid,
            )
            return
        if prev_nids:
            await q.execute(
                "DELETE FROM forward_extremities WHERE room_nid = $1"
                f" AND event_nid IN ({placeholders(len(prev_nids), 2)})",
                room_nid,
                *prev_nids,
            )
        await q.execute(
            "INSERT INTO forward_extremities (room_nid, event_nid) VALUES ($1, $2)",
            room_nid,
            event_nid,
        )

    async def add_redaction(self, q: Queries, redaction_nid: int, redacts: str) -> None:
        await q.execute(
            "INSERT INTO redactions (redaction_event_nid, redacts_event_id) VALUES ($1, $2)",
            redaction_nid,
            redacts,
        )

    async def pending_redactions(self, q: Queries, event_id: str) -> list[int]:
        """Nids of the recorded (accepted) redactions naming ``event_id``, oldest first."""
        rows = await q.fetchall(
            "SELECT redaction_event_nid FROM redactions WHERE redacts_event_id = $1"
            " ORDER BY redaction_event_nid",
            event_id,
        )
        return [int(r[0]) for r in rows]

    async def redaction_targets_among(self, q: Queries, event_ids: Sequence[str]) -> set[str]:
        """Those of ``event_ids`` that a recorded redaction names (one statement)."""
        found: set[str] = set()
        for chunk in _chunks(event_ids):
            rows = await q.fetchall(
                "SELECT DISTINCT redacts_event_id FROM redactions"
                f" WHERE redacts_event_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            found.update(str(r[0]) for r in rows)
        return found

    async def redaction_target(self, q: Queries, event_id: str) -> StoredEvent | None:
        """The stored event a new redaction names, read inside the persisting
        transaction (it may have been stored moments ago)."""
        row = await q.fetchone(f"SELECT {_COLUMNS}{_FROM} WHERE e.event_id = $1", event_id)
        return None if row is None else _stored(row)

    async def apply_redaction(
        self, q: Queries, event_nid: int, redacted: Event, redaction_nid: int
    ) -> bool:
        """Prune a stored event to ``redacted`` (its redacted form); False if it
        already was. The caller ``forget``s the nid once the transaction commits."""
        nid = await q.fetchval(
            "UPDATE events SET json = $1, redacted_by = $2"
            " WHERE event_nid = $3 AND redacted_by IS NULL RETURNING event_nid",
            encode_canonical_json(redacted.pdu).decode(),
            redaction_nid,
            event_nid,
        )
        return nid is not None

    async def add_txn_id(
        self, q: Queries, user_id: str, device_id: str, txn_id: str, event_id: str, ts: int
    ) -> None:
        await q.execute(_ADD_TXN_ID, user_id, device_id, txn_id, event_id, ts)

    async def add_txn_ids(self, q: Queries, rows: Sequence[tuple[str, str, str, str, int]]) -> None:
        """(user id, device id, txn id, event id, ts) rows, in one statement."""
        if rows:
            await q.executemany(_ADD_TXN_ID, rows)

    # ------------------------------------------------------------ reading

    async def current_position(self) -> int:
        value = await self.db.fetchval(
            "SELECT position FROM stream_positions WHERE stream_name = 'events'"
        )
        return int(value)

    async def event_for_txn(self, user_id: str, device_id: str, txn_id: str) -> str | None:
        value = await self.db.fetchval(
            "SELECT event_id FROM event_txn_ids"
            " WHERE user_id = $1 AND device_id = $2 AND txn_id = $3",
            user_id,
            device_id,
            txn_id,
        )
        return None if value is None else str(value)

    async def events_for_txns(
        self, txns: Sequence[tuple[str, str, str]]
    ) -> dict[tuple[str, str, str], str]:
        """(user id, device id, txn id) -> event id, for those of ``txns`` already sent."""
        wanted = list(dict.fromkeys(txns))
        if len(wanted) == 1:
            found = await self.event_for_txn(*wanted[0])
            return {} if found is None else {wanted[0]: found}
        out: dict[tuple[str, str, str], str] = {}
        for chunk in _chunks(wanted, 300):
            where = " OR ".join(
                f"(user_id = ${3 * i + 1} AND device_id = ${3 * i + 2} AND txn_id = ${3 * i + 3})"
                for i in range(len(chunk))
            )
            rows = await self.db.fetchall(
                f"SELECT user_id, device_id, txn_id, event_id FROM event_txn_ids WHERE {where}",
                *[v for t in chunk for v in t],
            )
            for r in rows:
                out[(str(r["user_id"]), str(r["device_id"]), str(r["txn_id"]))] = str(r["event_id"])
        return out

    async def txn_ids_for(
        self, user_id: str, device_id: str, event_ids: list[str]
    ) -> dict[str, str]:
        """event_id -> transaction_id of the given events sent from this device."""
        if not event_ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT event_id, txn_id FROM event_txn_ids WHERE user_id = $1 AND device_id = $2"
            f" AND event_id IN ({placeholders(len(event_ids), 3)})",
            user_id,
            device_id,
            *event_ids,
        )
        return {str(r["event_id"]): str(r["txn_id"]) for r in rows}

    @property
    def generation(self) -> int:
        """Moves on whenever a cached event may have changed (``forget``, here or in
        another process; every event after a bus reconnect): what was derived from
        cached events at one value is stale at another (``rooms.state_lists``)."""
        return self._generation

    def forget(self, nids: Iterable[int]) -> None:
        """Drop cached rows that changed (an applied redaction), here and in other processes."""
        wanted = list(nids)
        self.drop_cached(wanted)
        if self.publish is not None:
            self.publish(EVENTS_CACHE, [str(n) for n in wanted])

    def drop_cached(self, nids: Iterable[int] | None) -> None:
        """Drop cached rows in this process only (None: every one)."""
        self._generation += 1
        if nids is None:
            self._cache.clear()
            self._ids.clear()
            return
        for nid in nids:
            old = self._cache.pop(nid, None)
            if old is not None:
                self._ids.pop(old.event.event_id, None)

    def _keep(self, stored: StoredEvent) -> None:
        self._cache[stored.event_nid] = stored
        self._ids[stored.event.event_id] = stored.event_nid
        if len(self._cache) > self.cache_size:
            _, old = self._cache.popitem(last=False)
            self._ids.pop(old.event.event_id, None)

    async def by_nids(self, nids: Iterable[int]) -> dict[int, StoredEvent]:
        wanted = list(dict.fromkeys(nids))
        out = {n: self._cache[n] for n in wanted if n in self._cache}
        missing = [n for n in wanted if n not in out]
        generation = self._generation
        for chunk in _chunks(missing):
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS}{_FROM} WHERE e.event_nid IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for row in rows:
                stored = _stored(row)
                if generation == self._generation:
                    self._keep(stored)
                out[stored.event_nid] = stored
        return out

    async def by_ids(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        wanted = list(dict.fromkeys(event_ids))
        out: dict[str, StoredEvent] = {}
        missing = []
        for event_id in wanted:
            nid = self._ids.get(event_id)
            if nid is not None and nid in self._cache:
                out[event_id] = self._cache[nid]
            else:
                missing.append(event_id)
        generation = self._generation
        for chunk in _chunks(missing):
            rows = await self.db.fetchall(
                f"SELECT {_COLUMNS}{_FROM} WHERE e.event_id IN ({placeholders(len(chunk))})", *chunk
            )
            for row in rows:
                stored = _stored(row)
                if generation == self._generation:
                    self._keep(stored)
                out[stored.event.event_id] = stored
        return out

    async def auth_links(self, event_ids: Iterable[str]) -> dict[str, tuple[list[str], bool]]:
        """(auth event ids, rejected?) of each stored event, in batches, without
        caching the events: walking a huge auth chain keeps only ids in memory
        and leaves the cache to the room's hot events."""
        out: dict[str, tuple[list[str], bool]] = {}
        missing = []
        for event_id in dict.fromkeys(event_ids):
            nid = self._ids.get(event_id)
            cached = self._cache.get(nid) if nid is not None else None
            if cached is not None:
                out[event_id] = (cached.event.auth_event_ids, cached.rejected_reason is not None)
            else:
                missing.append(event_id)
        for chunk in _chunks(missing):
            rows = await self.db.fetchall(
                "SELECT e.event_id, e.json, e.rejected_reason, r.room_version"
                f"{_FROM} WHERE e.event_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            for row in rows:
                version = KNOWN_ROOM_VERSIONS[str(row["room_version"])]
                pdu = decode_stored_json(str(row["json"]), version.strict_canonical_json)
                event = Event(str(row["event_id"]), pdu, version)
                out[event.event_id] = (event.auth_event_ids, row["rejected_reason"] is not None)
        return out

    async def by_id(self, event_id: str) -> StoredEvent | None:
        return (await self.by_ids([event_id])).get(event_id)

    async def extremities(self, room_nid: int) -> list[StoredEvent]:
        rows = await self.db.fetchall(
            "SELECT event_nid FROM forward_extremities WHERE room_nid = $1", room_nid
        )
        found = await self.by_nids(int(r["event_nid"]) for r in rows)
        return sorted(found.values(), key=lambda s: s.event.depth)

    async def room_stream(
        self,
        room_nid: int,
        *,
        after: int | None,
        before: int | None,
        limit: int,
        backwards: bool,
        types: Sequence[str] = (),
        senders: Sequence[str] = (),
    ) -> list[StoredEvent]:
        """Visible events of a room with ``after < stream_ordering <= before``,
        newest first when ``backwards``. ``after`` None: from the stream's start (history
        backfilled for /messages has negative positions, which do not follow its order)."""
        sql = "SELECT event_nid FROM events WHERE room_nid = $1 AND stream_ordering IS NOT NULL"
        args: list[object] = [room_nid]
        args.append(0 if after is None else after)
        sql += f" AND stream_ordering > ${len(args)}"
        if before is not None:
            args.append(before)
            sql += f" AND stream_ordering <= ${len(args)}"
        if types:
            sql += f" AND event_type IN ({placeholders(len(types), len(args) + 1)})"
            args.extend(types)
        if senders:
            sql += f" AND sender IN ({placeholders(len(senders), len(args) + 1)})"
            args.extend(senders)
        args.append(limit)
        sql += f" ORDER BY stream_ordering {'DESC' if backwards else 'ASC'} LIMIT ${len(args)}"
        rows = await self.db.fetchall(sql, *args)
        nids = [int(r["event_nid"]) for r in rows]
        found = await self.by_nids(nids)
        return [found[n] for n in nids if n in found]

    async def events_after(self, after: int, limit: int) -> list[StoredEvent]:
        """Accepted timeline events of every room with ``stream_ordering > after``, oldest
        first (application-service transactions read the whole stream this way)."""
        rows = await self.db.fetchall(
            "SELECT event_nid FROM events WHERE stream_ordering > $1"
            " AND rejected_reason IS NULL AND soft_failed = 0"
            " ORDER BY stream_ordering ASC LIMIT $2",
            after,
            limit,
        )
        nids = [int(r["event_nid"]) for r in rows]
        found = await self.by_nids(nids)
        return [found[n] for n in nids if n in found]

    async def room_topological(
        self,
        room_nid: int,
        *,
        start: TopoPosition,
        bound: TopoPosition | None,
        limit: int,
        backwards: bool,
    ) -> list[StoredEvent]:
        """Visible events of a room in topological order (depth, stream_ordering).

        Backwards: events at or before ``start`` and after ``bound``, newest
        first; forwards: after ``start`` and at or before ``bound``, oldest
        first. A position without a depth bounds by stream_ordering alone (a
        /sync token), a position with one by (depth, stream_ordering)."""
        sql = "SELECT event_nid FROM events WHERE room_nid = $1 AND stream_ordering IS NOT NULL"
        args: list[object] = [room_nid]
        upper, lower = (start, bound) if backwards else (bound, start)
        if upper is not None:
            sql += _topo_clause(upper, "<=", args)
        if lower is not None:
            sql += _topo_clause(lower, ">", args)
        order = "DESC" if backwards else "ASC"
        args.append(limit)
        sql += f" ORDER BY depth {order}, stream_ordering {order} LIMIT ${len(args)}"
        rows = await self.db.fetchall(sql, *args)
        nids = [int(r["event_nid"]) for r in rows]
        found = await self.by_nids(nids)
        # A purge may take an event off the timeline between the two reads.
        return [found[n] for n in nids if n in found and found[n].stream_ordering is not None]

    async def gaps_before(self, event_nids: Sequence[int]) -> list[str]:
        """Prev events of ``event_nids`` that the timeline lacks: not stored, or
        stored only as (not rejected) outliers. Where /messages must backfill."""
        out: list[str] = []
        for chunk in _chunks(list(event_nids)):
            rows = await self.db.fetchall(
                "SELECT DISTINCT ee.prev_event_id FROM event_edges ee"
                " LEFT JOIN events p ON p.event_id = ee.prev_event_id"
                f" WHERE ee.event_nid IN ({placeholders(len(chunk))})"
                " AND (p.event_nid IS NULL OR (p.outlier = 1 AND p.rejected_reason IS NULL))",
                *chunk,
            )
            out.extend(str(r[0]) for r in rows)
        return sorted(set(out))

    async def state_events_between(
        self, room_nid: int, after: int, before: int
    ) -> list[StoredEvent]:
        """State events with ``after < stream_ordering < before``, oldest first; also
        those a history purge took off the timeline from there (``purged_stream``)."""
        rows = await self.db.fetchall(
            "SELECT event_nid FROM events WHERE room_nid = $1 AND state_key IS NOT NULL"
            " AND ((stream_ordering > $2 AND stream_ordering < $3)"
            " OR (purged_stream > $2 AND purged_stream < $3))"
            " ORDER BY COALESCE(stream_ordering, purged_stream)",
            room_nid,
            after,
            before,
        )
        nids = [int(r["event_nid"]) for r in rows]
        found = await self.by_nids(nids)
        return [found[n] for n in nids if n in found]

    async def purged_state_rooms(self, after: int, before_by_room: dict[int, int]) -> set[int]:
        """The rooms where a history purge took state events with positions in
        ``(after, before_by_room[room])`` off the timeline (a /sync from ``after`` must
        then say the room's timeline is limited); one statement per 200 rooms."""
        out: set[int] = set()
        # No integer lies strictly between ``after`` and ``after + 1``: such rooms (an
        # empty timeline when the stream has not moved) need no statement.
        items = sorted((n, b) for n, b in before_by_room.items() if b > after + 1)
        for start in range(0, len(items), 200):
            chunk = items[start : start + 200]
            where = per_room_bounds("purged_stream", "<", len(chunk), 2)
            rows = await self.db.fetchall(
                "SELECT DISTINCT room_nid FROM events WHERE purged_stream > $1"
                f" AND state_key IS NOT NULL AND ({where})",
                after,
                *(v for pair in chunk for v in pair),
            )
            out.update(int(r["room_nid"]) for r in rows)
        return out

    async def event_near_ts(self, room_nid: int, ts: int, forwards: bool) -> tuple[str, int] | None:
        """(event id, origin_server_ts) of the room's visible event closest to ``ts`` in
        that direction (at or after it forwards, at or before it backwards)."""
        cmp, order = (">=", "ASC") if forwards else ("<=", "DESC")
        row = await self.db.fetchone(
            "SELECT event_id, origin_server_ts FROM events WHERE room_nid = $1"
            f" AND origin_server_ts {cmp} $2 AND stream_ordering IS NOT NULL"
            " AND rejected_reason IS NULL AND soft_failed = 0"
            f" ORDER BY origin_server_ts {order}, stream_ordering {order} LIMIT 1",
            room_nid,
            ts,
        )
        if row is None:
            return None
        return str(row["event_id"]), int(row["origin_server_ts"])

    async def last_event_before(self, room_nid: int, before: int) -> StoredEvent | None:
        """The newest visible event of the room with ``stream_ordering < before`` that has a
        state group (an invite received over federation is in the stream without one)."""
        nid = await self.db.fetchval(
            "SELECT event_nid FROM events WHERE room_nid = $1 AND stream_ordering < $2"
            " AND state_group IS NOT NULL ORDER BY stream_ordering DESC LIMIT 1",
            room_nid,
            before,
        )
        if nid is None:
            return None
        return (await self.by_nids([int(nid)])).get(int(nid))

    async def latest_in_rooms(
        self, room_nids: Sequence[int], *, after: int | None, before: int, limit: int
    ) -> dict[int, list[StoredEvent]]:
        """room nid -> its newest ``limit`` events with ``after < stream_ordering <= before``,
        newest first: ``room_stream`` for many rooms in one statement per 100 rooms (each
        branch of the UNION ALL reads its room's index range, as ``room_stream`` does).
        ``after`` None: from the stream's start, as there (never backfilled history: its
        negative positions do not follow the stream's order, oldest last)."""
        out: dict[int, list[StoredEvent]] = {n: [] for n in room_nids}
        for chunk in _chunks(list(room_nids), 100):
            args: list[object] = [before, limit, 0 if after is None else after]
            bound = " AND stream_ordering > $3"
            first = len(args) + 1
            branches = [
                f"SELECT * FROM (SELECT room_nid, event_nid, stream_ordering FROM events"
                f" WHERE room_nid = ${first + i} AND stream_ordering IS NOT NULL"
                f" AND stream_ordering <= $1{bound} ORDER BY stream_ordering DESC LIMIT $2)"
                f" AS r{i}"
                for i in range(len(chunk))
            ]
            rows = await self.db.fetchall(" UNION ALL ".join(branches), *args, *chunk)
            found = await self.by_nids(int(r["event_nid"]) for r in rows)
            rows = sorted(rows, key=lambda r: -int(r["stream_ordering"]))
            for r in rows:
                stored = found.get(int(r["event_nid"]))
                if stored is not None:
                    out[int(r["room_nid"])].append(stored)
        return out

    async def rooms_with_events(self, room_nids: Sequence[int], after: int, upto: int) -> set[int]:
        """Which of ``room_nids`` have visible events in ``(after, upto]``."""
        out: set[int] = set()
        if upto <= after:
            return out  # an empty range: no statement (a sync woken by typing, say)
        for chunk in _chunks(list(room_nids)):
            rows = await self.db.fetchall(
                "SELECT DISTINCT room_nid FROM events WHERE stream_ordering > $1"
                f" AND stream_ordering <= $2 AND room_nid IN ({placeholders(len(chunk), 3)})",
                after,
                upto,
                *chunk,
            )
            out.update(int(r["room_nid"]) for r in rows)
        return out


def _topo_clause(pos: TopoPosition, op: str, args: list[object]) -> str:
    """``(depth, stream_ordering) op (pos.depth, pos.stream)`` for op in <=, >."""
    args.append(pos.stream)
    so = f"${len(args)}"
    if pos.depth is None:
        return f" AND stream_ordering {op} {so}"
    args.append(pos.depth)
    d = f"${len(args)}"
    strict = "<" if op == "<=" else ">"
    return f" AND (depth {strict} {d} OR (depth = {d} AND stream_ordering {op} {so}))"


def _chunks(items: Sequence[T], size: int = 500) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]
