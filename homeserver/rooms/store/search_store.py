"""Table ``event_search``: the full-text index of unencrypted room events.

One module, two engines (the DDL differs, see migrations 0013_*): SQLite
uses an FTS5 table (rowid = event_nid, ``bm25`` for rank, lower is better)
and PostgreSQL a tsvector column with a GIN index (``ts_rank``, higher is
better). Rows are written in the event's persisting transaction and
deleted when the event is redacted. Only the three keys the spec names are
indexed; ``m.room.encrypted`` events never are (they have no plaintext).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.events.model import Event
from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders

# content key that is searchable, by event type (spec: POST /search "keys").
SEARCHABLE = {
    "m.room.message": "content.body",
    "m.room.name": "content.name",
    "m.room.topic": "content.topic",
}

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class SearchHit:
    event_nid: int
    rank: float
    stream_ordering: int


def _fts5_query(term: str) -> str:
    """The user's words as FTS5 string tokens (all must match); no operators pass."""
    return " ".join(f'"{w}"' for w in _WORD.findall(term))


class SearchStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def index(self, q: Queries, ev: Event, event_nid: int) -> None:
        await self.index_many(q, [(ev, event_nid)])

    async def index_many(self, q: Queries, events: Sequence[tuple[Event, int]]) -> None:
        """Index the searchable text of (event, nid) pairs, in one statement."""
        rows = []
        for ev, event_nid in events:
            key = SEARCHABLE.get(ev.type)
            if key is None:
                continue
            value = ev.content.get(key.split(".", 1)[1])
            if isinstance(value, str) and value.strip():
                rows.append((event_nid, key, value))
        if not rows:
            return
        if self.db.engine == "sqlite":
            sql = "INSERT INTO event_search (rowid, key, value) VALUES ($1, $2, $3)"
        else:
            sql = (
                "INSERT INTO event_search (event_nid, key, vector)"
                " VALUES ($1, $2, to_tsvector('english', $3)) ON CONFLICT DO NOTHING"
            )
        if len(rows) == 1:
            await q.execute(sql, *rows[0])
        else:
            await q.executemany(sql, rows)

    async def remove(self, q: Queries, event_id: str) -> None:
        """The event was redacted: its text must no longer be found."""
        nid = await q.fetchval("SELECT event_nid FROM events WHERE event_id = $1", event_id)
        if nid is None:
            return
        column = "rowid" if self.db.engine == "sqlite" else "event_nid"
        await q.execute(f"DELETE FROM event_search WHERE {column} = $1", int(nid))

    async def search(
        self,
        term: str,
        room_nids: Sequence[int],
        keys: Sequence[str],
        *,
        by_rank: bool,
        before: int | None,
        offset: int,
        limit: int,
    ) -> list[SearchHit]:
        """Matching events of ``room_nids``: best rank first, or newest first
        (then only those with ``stream_ordering < before``)."""
        if not room_nids or not keys:
            return []
        sqlite = self.db.engine == "sqlite"
        query = _fts5_query(term) if sqlite else term
        if not query.strip():
            return []
        if sqlite:
            rank = "bm25(event_search)"
            sql = (
                f"SELECT e.event_nid, {rank} AS rank, e.stream_ordering FROM event_search s"
                " JOIN events e ON e.event_nid = s.rowid WHERE event_search MATCH $1"
            )
        else:
            rank = "ts_rank(s.vector, plainto_tsquery('english', $1))"
            sql = (
                f"SELECT e.event_nid, {rank} AS rank, e.stream_ordering FROM event_search s"
                " JOIN events e ON e.event_nid = s.event_nid"
                " WHERE s.vector @@ plainto_tsquery('english', $1)"
            )
        args: list[object] = [query]
        sql += f" AND s.key IN ({placeholders(len(keys), 2)})"
        args.extend(keys)
        sql += f" AND e.room_nid IN ({placeholders(len(room_nids), len(args) + 1)})"
        args.extend(room_nids)
        sql += " AND e.stream_ordering IS NOT NULL"
        if before is not None and not by_rank:
            args.append(before)
            sql += f" AND e.stream_ordering < ${len(args)}"
        if by_rank:
            sql += f" ORDER BY rank {'ASC' if sqlite else 'DESC'}, e.stream_ordering DESC"
        else:
            sql += " ORDER BY e.stream_ordering DESC"
        args.extend([limit, offset])
        sql += f" LIMIT ${len(args) - 1} OFFSET ${len(args)}"
        rows = await self.db.fetchall(sql, *args)
        # bm25 is lower-is-better and negative: report it so higher is better.
        return [
            SearchHit(int(r[0]), -float(r[1]) if sqlite else float(r[1]), int(r[2])) for r in rows
        ]

    async def count(self, term: str, room_nids: Sequence[int], keys: Sequence[str]) -> int:
        """Approximate total number of matches (spec: ``count``)."""
        if not room_nids or not keys:
            return 0
        sqlite = self.db.engine == "sqlite"
        query = _fts5_query(term) if sqlite else term
        if not query.strip():
            return 0
        if sqlite:
            sql = (
                "SELECT COUNT(*) FROM event_search s JOIN events e ON e.event_nid = s.rowid"
                " WHERE event_search MATCH $1"
            )
        else:
            sql = (
                "SELECT COUNT(*) FROM event_search s JOIN events e ON e.event_nid = s.event_nid"
                " WHERE s.vector @@ plainto_tsquery('english', $1)"
            )
        sql += f" AND s.key IN ({placeholders(len(keys), 2)})"
        sql += f" AND e.room_nid IN ({placeholders(len(room_nids), 2 + len(keys))})"
        return int(await self.db.fetchval(sql, query, *keys, *room_nids) or 0)
