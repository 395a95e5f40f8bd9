"""Server-side search (client-server "Server Side Search", POST /search).

Only the ``room_events`` category exists. The rooms searched are the
rooms the user is joined to (narrowed by the filter's ``rooms`` and
``not_rooms``); hits then pass the history-visibility check and the rest of
the filter. Encrypted events are never indexed (see ``SearchStore``), so an
encrypted room yields no hits. ``next_batch`` is ``r<offset>`` when ordered
by rank and ``s<stream position>`` when ordered by recency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import bad_json, invalid_param
from homeserver.rooms.filters import EventFilter
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.store.search_store import SEARCHABLE, SearchStore

DEFAULT_LIMIT = 10
MAX_ROUNDS = 5


@dataclass
class SearchRequest:
    term: str
    keys: list[str]
    flt: EventFilter
    rooms: list[str] | None = None
    not_rooms: list[str] = field(default_factory=list)
    order_by: str = "rank"
    before_limit: int = 0
    after_limit: int = 0
    include_profile: bool = False
    with_context: bool = False
    include_state: bool = False
    group_by: list[str] = field(default_factory=list)
    limit: int = DEFAULT_LIMIT


def _batch(token: str | None, by_rank: bool) -> tuple[int, int | None]:
    """(offset, before) from a next_batch token."""
    if token is None:
        return 0, None
    kind, rest = token[:1], token[1:]
    if not rest.isdigit() or len(rest) > 18 or kind != ("r" if by_rank else "s"):
        raise invalid_param("Invalid next_batch token")
    return (int(rest), None) if by_rank else (0, int(rest))


class SearchService:
    def __init__(self, reader: RoomReader, store: SearchStore) -> None:
        self.reader = reader
        self.rooms = reader.rooms
        self.store = store

    def validate(self, req: SearchRequest) -> None:
        if req.order_by not in ("rank", "recent"):
            raise invalid_param("order_by must be 'rank' or 'recent'")
        unknown = [k for k in req.keys if k not in SEARCHABLE.values()]
        if unknown:
            raise invalid_param(f"Unknown search key {unknown[0]}")
        if any(g not in ("room_id", "sender") for g in req.group_by):
            raise invalid_param("group_by keys must be 'room_id' or 'sender'")
        if not req.term.strip():
            raise bad_json("search_term must not be empty")

    async def _rooms(self, user_id: str, req: SearchRequest) -> dict[int, RoomInfo]:
        joined = await self.rooms.members.rooms_for_user(user_id, ("join",))
        infos = await self.rooms.rooms.rooms_by_nid(m.room_nid for m in joined)
        return {
            nid: info
            for nid, info in infos.items()
            if (req.rooms is None or info.room_id in req.rooms)
            and info.room_id not in req.not_rooms
        }

    async def search(
        self, user_id: str, device_id: str | None, req: SearchRequest, next_batch: str | None
    ) -> dict[str, Any]:
        self.validate(req)
        by_rank = req.order_by == "rank"
        offset, before = _batch(next_batch, by_rank)
        rooms = await self._rooms(user_id, req)
        nids = list(rooms)
        keys = req.keys or list(SEARCHABLE.values())
        hits: list[tuple[float, StoredEvent]] = []
        more = False
        for _ in range(MAX_ROUNDS):
            page = await self.store.search(
                req.term,
                nids,
                keys,
                by_rank=by_rank,
                before=before,
                offset=offset,
                limit=req.limit + 1,
            )
            more = len(page) > req.limit
            page = page[: req.limit]
            found = await self.rooms.events.by_nids(h.event_nid for h in page)
            for h in page:
                offset += 1
                before = h.stream_ordering
                s = found.get(h.event_nid)
                if s is None or not req.flt.matches(s.event):
                    continue
                if await self.reader.visibility.filter(user_id, rooms[s.room_nid], [s]):
                    hits.append((h.rank, s))
                if len(hits) >= req.limit:
                    break
            if len(hits) >= req.limit or not more:
                break
        ser = self.reader.serializer
        served = await ser.serialize([s for _, s in hits], user_id=user_id, device_id=device_id)
        results = []
        for (rank, s), event in zip(hits, served, strict=True):
            result: dict[str, Any] = {"rank": rank, "result": event}
            if req.with_context:
                result["context"] = await self._context(
                    user_id, device_id, rooms[s.room_nid], s, req
                )
            results.append(result)
        out: dict[str, Any] = {
            "count": await self.store.count(req.term, nids, keys),
            "highlights": sorted({w.lower() for w in re.findall(r"\w+", req.term)}),
            "results": results,
        }
        if more and hits:
            out["next_batch"] = f"r{offset}" if by_rank else f"s{before}"
        if req.include_state:
            out["state"] = await self._state({s.room_nid for _, s in hits}, rooms)
        if req.group_by:
            out["groups"] = _groups(hits, req.group_by)
        return {"search_categories": {"room_events": out}}

    async def _context(
        self,
        user_id: str,
        device_id: str | None,
        room: RoomInfo,
        s: StoredEvent,
        req: SearchRequest,
    ) -> dict[str, Any]:
        everything = EventFilter()
        before, start, after, end = await self.reader.around(
            user_id, room, s, req.before_limit, req.after_limit, everything
        )
        ser = self.reader.serializer
        ctx: dict[str, Any] = {
            "events_before": await ser.serialize(before, user_id=user_id, device_id=device_id),
            "events_after": await ser.serialize(after, user_id=user_id, device_id=device_id),
            "start": start.encode(),
            "end": end.encode(),
        }
        if req.include_profile:
            senders = sorted({e.event.sender for e in [*before, s, *after]})
            state = await self.rooms.state_at(
                s.state_group, [("m.room.member", u) for u in senders]
            )
            ctx["profile_info"] = {
                u: {
                    k: m.event.content[k]
                    for k in ("displayname", "avatar_url")
                    if isinstance(m.event.content.get(k), str)
                }
                for (_, u), m in state.items()
            }
        return ctx

    async def _state(
        self, room_nids: set[int], rooms: dict[int, RoomInfo]
    ) -> dict[str, list[dict[str, Any]]]:
        out = {}
        for nid in sorted(room_nids):
            room = rooms[nid]
            state = await self.rooms.current_state(room)
            out[room.room_id] = await self.reader.serializer.serialize(list(state.values()))
        return out


def _groups(
    hits: list[tuple[float, StoredEvent]], group_by: list[str]
) -> dict[str, dict[str, dict[str, Any]]]:
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for key in group_by:
        by: dict[str, dict[str, Any]] = {}
        for _, s in hits:
            value = s.event.room_id if key == "room_id" else s.event.sender
            group = by.setdefault(value, {"order": len(by) + 1, "results": []})
            group["results"].append(s.event.event_id)
        groups[key] = by
    return groups
