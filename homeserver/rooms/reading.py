"""Reading rooms: events, state, members, /messages and /context, under history visibility."""

from __future__ import annotations

from typing import Any

from homeserver.errors import forbidden, not_found
from homeserver.rooms.filters import EventFilter
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService, not_in_room
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo, StateKey
from homeserver.rooms.visibility import Visibility
from homeserver.sync.tokens import StreamToken, events_position

MAX_PAGES = 10
MEMBER = "m.room.member"


def _token(position: int) -> str:
    return StreamToken(events=max(0, position)).encode()


class RoomReader:
    def __init__(
        self, rooms: RoomService, visibility: Visibility, serializer: EventSerializer
    ) -> None:
        self.rooms = rooms
        self.visibility = visibility
        self.serializer = serializer

    async def _view(self, user_id: str, room: RoomInfo) -> StoredEvent | None:
        """Which state the user may read: None for the current state, else their
        leave or ban event (state is frozen there); 403 for outsiders of a
        non-world-readable room."""
        m = await self.rooms.members.get(room.room_nid, user_id)
        if m is not None and m.membership == "join":
            return None
        if await self.visibility.world_readable(room):
            return None
        if m is not None and m.membership in ("leave", "ban"):
            ev = (await self.rooms.events.by_nids([m.event_nid])).get(m.event_nid)
            if ev is not None and ev.state_group is not None:
                return ev
        raise not_in_room()

    async def _state(
        self, user_id: str, room: RoomInfo, keys: list[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        left = await self._view(user_id, room)
        if left is None:
            return await self.rooms.current_state(room, keys)
        return await self.rooms.state_at(left.state_group, keys)

    async def state(self, user_id: str, room_id: str) -> list[dict[str, Any]]:
        room = await self.rooms.room_or_forbidden(room_id)
        state = await self._state(user_id, room)
        return await self.serializer.serialize(list(state.values()))

    async def state_event(
        self, user_id: str, room_id: str, event_type: str, state_key: str
    ) -> StoredEvent:
        room = await self.rooms.room_or_forbidden(room_id)
        key = (event_type, state_key)
        found = (await self._state(user_id, room, [key])).get(key)
        if found is None:
            raise not_found("Event not found")
        return found

    async def members(
        self,
        user_id: str,
        room_id: str,
        at: str | None,
        membership: str | None,
        not_membership: str | None,
    ) -> list[dict[str, Any]]:
        room = await self.rooms.room_or_forbidden(room_id)
        left = await self._view(user_id, room)
        group = None if left is None else left.state_group
        if at is not None:
            # The state at a position, but never past the user's own leave.
            pos = events_position(at, "at")
            if left is not None and left.stream_ordering is not None:
                pos = min(pos, left.stream_ordering)
            last = await self.rooms.events.last_event_before(room.room_nid, pos + 1)
            if last is not None and last.state_group is not None:
                group = last.state_group
        if group is None:
            nids = await self.rooms.state.current_state_of_type(room.room_nid, "m.room.member")
            found = await self.rooms.events.by_nids(nids.values())
            events = list(found.values())
        else:
            state = await self.rooms.state_at(group)
            events = [s for k, s in state.items() if k[0] == "m.room.member"]
        events = [
            s
            for s in events
            if (membership is None or s.event.membership == membership)
            and (not_membership is None or s.event.membership != not_membership)
        ]
        events.sort(key=lambda s: s.event.state_key or "")
        return await self.serializer.serialize(events)

    async def joined_members(self, user_id: str, room_id: str) -> dict[str, dict[str, Any]]:
        room = await self.rooms.room_or_forbidden(room_id)
        me = await self.rooms.members.get(room.room_nid, user_id)
        if me is None or me.membership != "join":
            raise not_in_room()
        joined = await self.rooms.members.members(room.room_nid, ("join",))
        found = await self.rooms.events.by_nids(m.event_nid for m in joined)
        out: dict[str, dict[str, Any]] = {}
        for m in joined:
            ev = found.get(m.event_nid)
            content = ev.event.content if ev is not None else {}
            member: dict[str, Any] = {}
            # RoomMember fields are strings: an unset name or avatar is left out.
            if isinstance(content.get("displayname"), str):
                member["display_name"] = content["displayname"]
            if isinstance(content.get("avatar_url"), str):
                member["avatar_url"] = content["avatar_url"]
            out[m.user_id] = member
        return out

    async def joined_rooms(self, user_id: str) -> list[str]:
        joined = await self.rooms.members.rooms_for_user(user_id, ("join",))
        infos = await self.rooms.rooms.rooms_by_nid(m.room_nid for m in joined)
        return [infos[m.room_nid].room_id for m in joined if m.room_nid in infos]

    async def get_event(
        self, user_id: str, device_id: str | None, room_id: str, event_id: str
    ) -> dict[str, Any]:
        room = await self.rooms.room_or_forbidden(room_id)
        stored = await self.rooms.events.by_id(event_id)
        if stored is None or stored.room_nid != room.room_nid or stored.stream_ordering is None:
            raise not_found("Event not found")
        if not await self.visibility.filter(user_id, room, [stored]):
            raise not_found("Event not found")
        (out,) = await self.serializer.serialize([stored], user_id=user_id, device_id=device_id)
        return out

    async def _page(
        self,
        user_id: str,
        room: RoomInfo,
        position: int,
        bound: int | None,
        limit: int,
        backwards: bool,
        flt: EventFilter,
    ) -> tuple[list[StoredEvent], int, bool]:
        """Up to ``limit`` visible events from ``position``; (events, next position, more?)."""
        out: list[StoredEvent] = []
        cursor = position
        more = True
        for _ in range(MAX_PAGES):
            batch = await self.rooms.events.room_stream(
                room.room_nid,
                after=bound if backwards else cursor,
                before=cursor if backwards else bound,
                limit=limit,
                backwards=backwards,
            )
            if len(batch) < limit:
                more = False
            visible = await self.visibility.filter(user_id, room, batch)
            for s in visible:
                if len(out) >= limit:
                    break
                if flt.matches(s.event):
                    out.append(s)
            if len(out) >= limit:
                last = out[-1]
                assert last.stream_ordering is not None
                cursor = last.stream_ordering - 1 if backwards else last.stream_ordering
                more = True
                break
            if batch:
                so = batch[-1].stream_ordering
                assert so is not None
                cursor = so - 1 if backwards else so
            if not more:
                break
        return out, cursor, more

    async def messages(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        *,
        from_token: str | None,
        to_token: str | None,
        backwards: bool,
        limit: int,
        flt: EventFilter,
    ) -> dict[str, Any]:
        room = await self.rooms.room_or_forbidden(room_id)
        await self._view(user_id, room)
        if from_token is not None:
            position = events_position(from_token)
        elif backwards:
            position = await self.rooms.events.current_position()
        else:
            position = 0
        bound = events_position(to_token, "to") if to_token is not None else None
        events, cursor, more = await self._page(
            user_id, room, position, bound, limit, backwards, flt
        )
        chunk = await self.serializer.serialize(events, user_id=user_id, device_id=device_id)
        out: dict[str, Any] = {"chunk": chunk, "start": from_token or _token(position)}
        if more and events:
            out["end"] = _token(cursor)
        if flt.lazy_load_members and events:
            # spec: with lazy_load_members, `state` holds the chunk senders' member events
            members = await self._sender_members(events[0], events)
            out["state"] = await self.serializer.serialize(members)
        return out

    async def _sender_members(
        self, at: StoredEvent, events: list[StoredEvent]
    ) -> list[StoredEvent]:
        """The membership events of ``events``' senders in the state after ``at``."""
        senders = sorted({s.event.sender for s in events})
        found = await self.rooms.state_at(at.state_group, [(MEMBER, u) for u in senders])
        return list(found.values())

    async def context(
        self,
        user_id: str,
        device_id: str | None,
        room_id: str,
        event_id: str,
        limit: int,
        flt: EventFilter,
    ) -> dict[str, Any]:
        room = await self.rooms.room_or_forbidden(room_id)
        stored = await self.rooms.events.by_id(event_id)
        if stored is None or stored.room_nid != room.room_nid or stored.stream_ordering is None:
            raise not_found("Event not found")
        if not await self.visibility.filter(user_id, room, [stored]):
            raise forbidden("You may not see this event")
        so = stored.stream_ordering
        before, start, _ = (
            await self._page(user_id, room, so - 1, None, limit // 2, True, flt)
            if limit // 2
            else ([], so - 1, False)
        )
        after, end, _ = (
            await self._page(user_id, room, so, None, limit - limit // 2, False, flt)
            if limit - limit // 2
            else ([], so, False)
        )
        last = after[-1] if after else stored
        if flt.lazy_load_members:
            members = await self._sender_members(last, [*before, stored, *after])
            state = {(MEMBER, s.event.state_key or ""): s for s in members}
        else:
            state = await self.rooms.state_at(last.state_group)
        ser = self.serializer
        return {
            "event": (await ser.serialize([stored], user_id=user_id, device_id=device_id))[0],
            "events_before": await ser.serialize(before, user_id=user_id, device_id=device_id),
            "events_after": await ser.serialize(after, user_id=user_id, device_id=device_id),
            "start": _token(start),
            "end": _token(end),
            "state": await ser.serialize(list(state.values())),
        }
