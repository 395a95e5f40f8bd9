"""Relations and threads (client-server "Relationships", "Threading",
"Event replacements", "Reference relations").

``RelationAggregator.bundles`` computes the bundled aggregations that the
serializer puts in ``unsigned."m.relations"`` of every timeline event it
serves (/messages, /event, /context, /sync, /relations, /threads), with a
fixed number of batched queries per page: ``m.thread`` (latest event,
count, whether the reader took part), ``m.replace`` (the most recent valid
edit, v1.7 rules) and ``m.reference`` (the referencing event ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from homeserver.errors import invalid_param, not_found
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.relations_store import RelationStore, relation_of
from homeserver.streams.tokens import StreamToken, pagination_position

if TYPE_CHECKING:
    from homeserver.rooms.reading import RoomReader

MAX_RECURSION = 3


@dataclass
class Bundle:
    thread: tuple[StoredEvent, int, bool] | None = None  # latest, count, participated
    edit: StoredEvent | None = None
    references: list[str] = field(default_factory=list)


def valid_edit(original: StoredEvent, edit: StoredEvent) -> bool:
    """Spec "Validity of replacement events" (the room is the same by construction)."""
    o, e = original.event, edit.event
    if o.sender != e.sender or o.type != e.type or o.is_state() or e.is_state():
        return False
    rel = relation_of(o.content)
    if rel is not None and rel.rel_type == "m.replace":
        return False
    # An encrypted edit carries m.new_content inside its ciphertext.
    return e.type == "m.room.encrypted" or isinstance(e.content.get("m.new_content"), dict)


class RelationAggregator:
    def __init__(self, relations: RelationStore, events: EventStore) -> None:
        self.relations = relations
        self.events = events

    async def bundles(
        self, stored: Sequence[StoredEvent], user_id: str, redacted: set[str]
    ) -> dict[str, Bundle]:
        """Bundled aggregations of ``stored`` (redacted parents get no m.replace)."""
        ids = [s.event.event_id for s in stored if not s.event.is_state()]
        if not ids:
            return {}
        heads, children = await self.relations.thread_heads_and_children(
            ids, ("m.replace", "m.reference")
        )
        latest: dict[str, int] = {}
        counts: dict[str, int] = {}
        mine: set[str] = set()
        if heads:
            nid_of = await self.relations.nids_at(list(heads.values()))
            latest = {p: nid_of[so] for p, so in heads.items() if so in nid_of}
            counts = await self.relations.counts(list(latest), "m.thread")
            mine = await self.relations.participated(list(latest), user_id)
        # A redacted parent gets no m.replace (spec: "Redactions of edited events").
        edits = {i: ns for i, ns in children["m.replace"].items() if i not in redacted}
        refs = children["m.reference"]
        wanted = [*latest.values(), *(n for ns in edits.values() for n in ns)]
        wanted += [n for ns in refs.values() for n in ns]
        found = await self.events.by_nids(wanted)
        by_id = {s.event.event_id: s for s in stored}
        out: dict[str, Bundle] = {}
        for event_id in ids:
            b = Bundle()
            if event_id in latest and latest[event_id] in found:
                root = by_id[event_id]
                took_part = event_id in mine or root.event.sender == user_id
                b.thread = (found[latest[event_id]], counts.get(event_id, 0), took_part)
            candidates = [
                found[n]
                for n in edits.get(event_id, [])
                if n in found and valid_edit(by_id[event_id], found[n])
            ]
            if candidates:
                b.edit = max(candidates, key=lambda s: (s.event.origin_server_ts, s.event.event_id))
            b.references = [found[n].event.event_id for n in refs.get(event_id, []) if n in found]
            if b.thread is not None or b.edit is not None or b.references:
                out[event_id] = b
        return out


def _stream(token: str) -> int:
    """The stream position of a relations, /messages or /sync token."""
    return pagination_position(token).stream


def _token(position: int) -> str:
    return StreamToken(events=max(0, position)).encode()


class RelationsService:
    """GET /rooms/{roomId}/relations/... and /threads, under history visibility."""

    def __init__(self, reader: RoomReader, relations: RelationStore) -> None:
        self.reader = reader
        self.rooms = reader.rooms
        self.relations = relations

    async def _parent(self, user_id: str, room_id: str, event_id: str) -> StoredEvent:
        room = await self.rooms.room_or_forbidden(room_id)
        await self.reader._view(user_id, room)
        parent = await self.rooms.events.by_id(event_id)
        if parent is None or parent.room_nid != room.room_nid or parent.stream_ordering is None:
            raise not_found("Event not found")
        if not await self.reader.visibility.filter(user_id, room, [parent]):
            raise not_found("Event not found")
        return parent

    async def relations_of(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        event_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_token: str | None,
        to_token: str | None,
        limit: int,
        backwards: bool,
        recurse: bool,
    ) -> dict[str, Any]:
        parent = await self._parent(user_id, room_id, event_id)
        room = await self.rooms.room_or_forbidden(room_id)
        start = _stream(from_token) if from_token is not None else None
        bound = _stream(to_token) if to_token is not None else None
        after, before = (bound, start) if backwards else (start, bound)
        depth = MAX_RECURSION if recurse else 1
        parents = [parent.event.event_id]
        nids: list[int] = []
        reached = 0
        for level in range(depth):
            # Deeper levels keep every rel_type; the filters apply to the results.
            level_nids = await self.relations.children(
                room.room_nid,
                parents,
                rel_type=rel_type if not recurse else None,
                event_type=event_type if not recurse else None,
                after=after,
                before=before,
                limit=limit + 1 if not recurse else 1000,
                backwards=backwards,
            )
            if not level_nids:
                break
            reached = level + 1
            nids.extend(level_nids)
            found = await self.rooms.events.by_nids(level_nids)
            parents = [found[n].event.event_id for n in level_nids if n in found]
        found = await self.rooms.events.by_nids(nids)
        events = [found[n] for n in nids if n in found]
        if recurse:
            events = [
                s
                for s in events
                if (event_type is None or s.event.type == event_type)
                and (rel_type is None or _rel_type(s) == rel_type)
            ]
        events.sort(key=lambda s: s.stream_ordering or 0, reverse=backwards)
        more = len(events) > limit
        events = events[:limit]
        visible = await self.reader.visibility.filter(user_id, room, events)
        chunk = await self.reader.serializer.serialize(
            visible, user_id=user_id, device_id=device_id
        )
        out: dict[str, Any] = {"chunk": chunk}
        if more and events:
            last = events[-1].stream_ordering or 0
            out["next_batch"] = _token(last - 1 if backwards else last)
        if from_token is not None:
            out["prev_batch"] = from_token
        if recurse:
            out["recursion_depth"] = max(reached, 1)
        return out

    async def threads(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        *,
        include: str,
        from_token: str | None,
        limit: int,
    ) -> dict[str, Any]:
        if include not in ("all", "participated"):
            raise invalid_param("'include' must be 'all' or 'participated'")
        room = await self.rooms.room_or_forbidden(room_id)
        await self.reader._view(user_id, room)
        before = _stream(from_token) + 1 if from_token is not None else None
        rows = await self.relations.threads(
            room.room_nid,
            before=before,
            limit=limit + 1,
            participant=user_id if include == "participated" else None,
        )
        more = len(rows) > limit
        rows = rows[:limit]
        roots = await self.rooms.events.by_ids(r for r, _ in rows)
        ordered = [roots[r] for r, _ in rows if r in roots and roots[r].room_nid == room.room_nid]
        visible = await self.reader.visibility.filter(user_id, room, ordered)
        chunk = await self.reader.serializer.serialize(
            visible, user_id=user_id, device_id=device_id
        )
        out: dict[str, Any] = {"chunk": chunk}
        if more and rows:
            out["next_batch"] = _token(rows[-1][1] - 1)
        return out


def _rel_type(s: StoredEvent) -> str | None:
    rel = relation_of(s.event.content)
    return None if rel is None else rel.rel_type
