"""GET /sync: what changed for a user since a token.

Design note
-----------
The response is built from database positions only, so a token is valid
across restarts. Incremental syncs touch only rooms that changed: rooms
whose membership row moved past the token, and joined rooms with events in
``(since, now]`` (one indexed query over the user's rooms). Full state is
loaded only for an initial sync, ``full_state=true``, or a room the user
joined since the token; otherwise the state section is the state events
between the token and the start of a limited timeline.

Long-poll: the request registers with the notifier *before* reading the
position, so an event persisted meanwhile wakes it (see notifier.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from homeserver.rooms.filters import EventFilter
from homeserver.rooms.serialize import STRIPPED_STATE_KEYS, EventSerializer, stripped_state
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.membership_store import Membership
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.visibility import Visibility
from homeserver.sync.notifier import Notifier
from homeserver.sync.tokens import StreamToken

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 100


@dataclass(frozen=True)
class SyncRequest:
    user_id: str
    device_id: str
    since: StreamToken | None = None
    timeout_ms: int = 0
    full_state: bool = False
    timeline: EventFilter = field(default_factory=EventFilter)

    @property
    def limit(self) -> int:
        limit = self.timeline.limit
        return DEFAULT_TIMELINE_LIMIT if limit is None else max(1, min(limit, MAX_TIMELINE_LIMIT))


def _token(position: int) -> str:
    return StreamToken(events=max(0, position)).encode()


class SyncBuilder:
    def __init__(
        self,
        rooms: RoomService,
        visibility: Visibility,
        serializer: EventSerializer,
        notifier: Notifier,
    ) -> None:
        self.rooms = rooms
        self.visibility = visibility
        self.serializer = serializer
        self.notifier = notifier

    async def sync(self, req: SyncRequest) -> dict[str, Any]:
        with self.notifier.listen(req.user_id) as listener:
            result = await self._build(req)
            if req.since is None or req.full_state or req.timeout_ms <= 0:
                return result
            deadline = time.monotonic() + req.timeout_ms / 1000
            while _is_empty(result):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                listener.event.clear()
                if not await listener.wait(remaining):
                    break
                result = await self._build(req)
            return result

    async def _build(self, req: SyncRequest) -> dict[str, Any]:
        now = await self.rooms.events.current_position()
        since = req.since.events if req.since is not None else None
        members = self.rooms.members
        if since is None:
            current = await members.rooms_for_user(req.user_id, ("join", "invite", "knock"))
            changed = [m for m in current if m.stream_ordering <= now]
            active: set[int] = {m.room_nid for m in changed if m.membership == "join"}
        else:
            changed = await members.changed_since(req.user_id, since, now)
            joined = await members.rooms_for_user(req.user_id, ("join",))
            joined_nids = [m.room_nid for m in joined if m.stream_ordering <= now]
            active = await self.rooms.events.rooms_with_events(joined_nids, since, now)
            active |= {m.room_nid for m in changed if m.membership == "join"}
        by_room = {m.room_nid: m for m in changed}
        infos = await self.rooms.rooms.rooms_by_nid(active | by_room.keys())
        out: dict[str, dict[str, Any]] = {"join": {}, "invite": {}, "leave": {}, "knock": {}}
        for nid in sorted(active):
            m = by_room.get(nid)
            newly = since is None or (m is not None and m.membership == "join")
            out["join"][infos[nid].room_id] = await self._room(
                req, infos[nid], since, now, full=newly or req.full_state
            )
        for m in changed:
            room = infos.get(m.room_nid)
            if room is None or m.membership == "join":
                continue
            if m.membership in ("invite", "knock"):
                key = "invite_state" if m.membership == "invite" else "knock_state"
                out[m.membership][room.room_id] = {key: {"events": await self._stripped(room, m)}}
            elif since is not None:
                out["leave"][room.room_id] = await self._room(
                    req, room, since, m.stream_ordering, full=req.full_state
                )
        next_token = (req.since or StreamToken()).with_events(now)
        return {
            "next_batch": next_token.encode(),
            "rooms": out,
            "presence": {"events": []},
            "account_data": {"events": []},
            "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []},
            "device_one_time_keys_count": {},
        }

    async def _room(
        self, req: SyncRequest, room: RoomInfo, since: int | None, upto: int, full: bool
    ) -> dict[str, Any]:
        limit = req.limit
        batch = await self.rooms.events.room_stream(
            room.room_nid, after=since, before=upto, limit=limit + 1, backwards=True
        )
        limited = len(batch) > limit
        batch = list(reversed(batch[:limit]))
        timeline = await self.visibility.filter(req.user_id, room, batch)
        timeline = [s for s in timeline if req.timeline.matches(s.event)]
        start = batch[0].stream_ordering if batch else upto + 1
        assert start is not None
        state: list[StoredEvent] = []
        if full:
            before = await self.rooms.events.last_event_before(room.room_nid, start)
            if before is not None:
                state = list((await self.rooms.state_at(before.state_group)).values())
        elif limited and since is not None:
            latest: dict[tuple[str, str], StoredEvent] = {}
            for s in await self.rooms.events.state_events_between(room.room_nid, since, start):
                latest[s.event.state_tuple()] = s
            state = list(latest.values())
        ser = self.serializer
        kw: dict[str, Any] = {"user_id": req.user_id, "device_id": req.device_id}
        return {
            "timeline": {
                "events": await ser.serialize(timeline, with_room_id=False, **kw),
                "limited": limited,
                "prev_batch": _token(start - 1),
            },
            "state": {"events": await ser.serialize(state, with_room_id=False)},
            "ephemeral": {"events": []},
            "account_data": {"events": []},
            "unread_notifications": {"highlight_count": 0, "notification_count": 0},
            "summary": {},
        }

    async def _stripped(self, room: RoomInfo, m: Membership) -> list[dict[str, Any]]:
        state = await self.rooms.current_state(room, STRIPPED_STATE_KEYS)
        own = await self.rooms.events.by_nids([m.event_nid])
        events = list(state.values()) + list(own.values())
        out = stripped_state(events)
        # An invite or knock for a room this server is not in carries the room's
        # stripped state (given by the other server) in its unsigned data.
        seen = {(e["type"], e["state_key"]) for e in out}
        for s in own.values():
            unsigned = s.event.pdu.get("unsigned")
            given = (
                unsigned.get(f"{m.membership}_room_state") if isinstance(unsigned, dict) else None
            )
            for e in given if isinstance(given, list) else []:
                key = (e.get("type"), e.get("state_key")) if isinstance(e, dict) else None
                if key is not None and key not in seen and isinstance(e.get("content"), dict):
                    seen.add(key)
                    out.append(
                        {k: e[k] for k in ("type", "state_key", "content", "sender") if k in e}
                    )
        return out


def _is_empty(result: dict[str, Any]) -> bool:
    return not any(result["rooms"].values())
