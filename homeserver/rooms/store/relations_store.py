"""Table ``event_relations``: which event relates to which, and how.

Rows are written by ``EventPersister`` in the event's own transaction and
removed when the child is redacted (a redacted event has no m.relates_to).
Reads are batched per page of parents, never one query per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.events.model import Event
from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders


@dataclass(frozen=True, slots=True)
class Relation:
    rel_type: str
    relates_to_id: str
    aggregation_key: str | None


def relation_of(content: dict[str, Any]) -> Relation | None:
    """The event's relation (content."m.relates_to"), if it names a rel_type and an event."""
    rel = content.get("m.relates_to")
    if not isinstance(rel, dict):
        return None
    rel_type = rel.get("rel_type")
    parent = rel.get("event_id")
    if not isinstance(rel_type, str) or not isinstance(parent, str) or not rel_type:
        return None
    key = rel.get("key")
    return Relation(rel_type, parent, key if isinstance(key, str) else None)


class RelationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, q: Queries, ev: Event, event_nid: int, room_nid: int) -> None:
        """Record the event's relation (inside the persisting transaction)."""
        if ev.is_state():
            return
        rel = relation_of(ev.content)
        if rel is None:
            return
        await q.execute(
            "INSERT INTO event_relations (event_nid, event_id, room_nid, relates_to_id,"
            " rel_type, event_type, sender, aggregation_key)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
            event_nid,
            ev.event_id,
            room_nid,
            rel.relates_to_id,
            rel.rel_type,
            ev.type,
            ev.sender,
            rel.aggregation_key,
        )

    async def remove(self, q: Queries, event_id: str) -> None:
        """The event was redacted: it relates to nothing any more."""
        await q.execute("DELETE FROM event_relations WHERE event_id = $1", event_id)

    async def children(
        self,
        room_nid: int,
        parent_ids: Sequence[str],
        *,
        rel_type: str | None,
        event_type: str | None,
        after: int | None,
        before: int | None,
        limit: int,
        backwards: bool,
    ) -> list[int]:
        """Child event nids of ``parent_ids`` in stream order, with
        ``after < stream_ordering <= before``."""
        if not parent_ids:
            return []
        sql = (
            "SELECT r.event_nid FROM event_relations r JOIN events e ON e.event_nid = r.event_nid"
            f" WHERE r.room_nid = $1 AND r.relates_to_id IN ({placeholders(len(parent_ids), 2)})"
            " AND e.stream_ordering IS NOT NULL"
        )
        args: list[object] = [room_nid, *parent_ids]
        for cond, value in (
            ("r.rel_type = ", rel_type),
            ("r.event_type = ", event_type),
            ("e.stream_ordering > ", after),
            ("e.stream_ordering <= ", before),
        ):
            if value is not None:
                args.append(value)
                sql += f" AND {cond}${len(args)}"
        args.append(limit)
        sql += f" ORDER BY e.stream_ordering {'DESC' if backwards else 'ASC'} LIMIT ${len(args)}"
        return [int(r[0]) for r in await self.db.fetchall(sql, *args)]

    async def counts(self, parent_ids: Sequence[str], rel_type: str) -> dict[str, int]:
        """parent id -> number of visible children of ``rel_type``."""
        if not parent_ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT r.relates_to_id, COUNT(*) FROM event_relations r"
            " JOIN events e ON e.event_nid = r.event_nid WHERE r.rel_type = $1"
            " AND e.stream_ordering IS NOT NULL"
            f" AND r.relates_to_id IN ({placeholders(len(parent_ids), 2)})"
            " GROUP BY r.relates_to_id",
            rel_type,
            *parent_ids,
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def all_of(self, parent_ids: Sequence[str], rel_type: str) -> dict[str, list[int]]:
        """parent id -> nids of every visible child of ``rel_type`` (edits, references)."""
        if not parent_ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT r.relates_to_id, r.event_nid FROM event_relations r"
            " JOIN events e ON e.event_nid = r.event_nid WHERE r.rel_type = $1"
            " AND e.stream_ordering IS NOT NULL"
            f" AND r.relates_to_id IN ({placeholders(len(parent_ids), 2)})"
            " ORDER BY e.stream_ordering",
            rel_type,
            *parent_ids,
        )
        out: dict[str, list[int]] = {}
        for r in rows:
            out.setdefault(str(r[0]), []).append(int(r[1]))
        return out

    async def thread_heads_and_children(
        self, parent_ids: Sequence[str], rel_types: Sequence[str]
    ) -> tuple[dict[str, int], dict[str, dict[str, list[int]]]]:
        """(parent -> stream ordering of its newest visible ``m.thread`` child, type ->
        parent -> nids of every visible child of that type in stream order) in ONE
        statement: a /sync timeline's bundled aggregations start with both (edits and
        references, and thread heads), and on PostgreSQL each statement is a round trip."""
        children: dict[str, dict[str, list[int]]] = {t: {} for t in rel_types}
        if not parent_ids:
            return {}, children
        ids = placeholders(len(parent_ids), len(rel_types) + 1)
        rows = await self.db.fetchall(
            "SELECT 0 AS part, 'm.thread' AS rel_type, r.relates_to_id,"
            " MAX(e.stream_ordering) AS so, 0 AS event_nid FROM event_relations r"
            " JOIN events e ON e.event_nid = r.event_nid WHERE r.rel_type = 'm.thread'"
            f" AND e.stream_ordering IS NOT NULL AND r.relates_to_id IN ({ids})"
            " GROUP BY r.relates_to_id"
            " UNION ALL SELECT 1 AS part, r.rel_type, r.relates_to_id, e.stream_ordering,"
            " r.event_nid FROM event_relations r JOIN events e ON e.event_nid = r.event_nid"
            f" WHERE r.rel_type IN ({placeholders(len(rel_types))})"
            f" AND e.stream_ordering IS NOT NULL AND r.relates_to_id IN ({ids})",
            *rel_types,
            *parent_ids,
        )
        heads = {str(r[2]): int(r[3]) for r in rows if int(r[0]) == 0}
        for r in sorted((r for r in rows if int(r[0]) == 1), key=lambda r: int(r[3])):
            children[str(r[1])].setdefault(str(r[2]), []).append(int(r[4]))
        return heads, children

    async def nids_at(self, positions: Sequence[int]) -> dict[int, int]:
        """stream ordering -> event nid."""
        if not positions:
            return {}
        found = await self.db.fetchall(
            "SELECT event_nid, stream_ordering FROM events"
            f" WHERE stream_ordering IN ({placeholders(len(positions))})",
            *positions,
        )
        return {int(r[1]): int(r[0]) for r in found}

    async def participated(self, parent_ids: Sequence[str], user_id: str) -> set[str]:
        """Thread roots (of ``parent_ids``) with a thread event sent by ``user_id``."""
        if not parent_ids:
            return set()
        rows = await self.db.fetchall(
            "SELECT DISTINCT relates_to_id FROM event_relations WHERE rel_type = 'm.thread'"
            f" AND sender = $1 AND relates_to_id IN ({placeholders(len(parent_ids), 2)})",
            user_id,
            *parent_ids,
        )
        return {str(r[0]) for r in rows}

    async def threads(
        self, room_nid: int, *, before: int | None, limit: int, participant: str | None
    ) -> list[tuple[str, int]]:
        """(root id, latest thread activity) of the room's threads, most recent
        activity first, with activity ``< before``."""
        sql = (
            "SELECT r.relates_to_id, MAX(e.stream_ordering) AS latest FROM event_relations r"
            " JOIN events e ON e.event_nid = r.event_nid WHERE r.room_nid = $1"
            " AND r.rel_type = 'm.thread' AND e.stream_ordering IS NOT NULL"
        )
        args: list[object] = [room_nid]
        if participant is not None:
            args.append(participant)
            sql += (
                " AND r.relates_to_id IN (SELECT relates_to_id FROM event_relations"
                f" WHERE rel_type = 'm.thread' AND sender = ${len(args)}"
                f" UNION SELECT event_id FROM events WHERE room_nid = $1 AND sender = ${len(args)})"
            )
        sql += " GROUP BY r.relates_to_id"
        if before is not None:
            args.append(before)
            sql += f" HAVING MAX(e.stream_ordering) < ${len(args)}"
        args.append(limit)
        sql += f" ORDER BY latest DESC LIMIT ${len(args)}"
        return [(str(r[0]), int(r[1])) for r in await self.db.fetchall(sql, *args)]
