"""Reading rooms: events, state, members, /messages and /context, under history visibility.

Design note: order and backfill
-------------------------------
/messages and /context walk a room in *topological* order, (depth,
stream_ordering), and hand out ``t<depth>_<stream>`` tokens; /sync walks
it in stream (arrival) order, as the client-server spec prescribes for it
("Events are ordered in this API according to the arrival time of the
event on the homeserver ... Clients SHOULD de-duplicate events"). The two
differ only for events that arrive late: those fetched by
get_missing_events get new (positive) stream positions, so /sync delivers
them after the token the client holds, never silently behind it, while
/messages shows them where the event graph puts them. History fetched for
/messages (``Backfiller``) gets negative stream positions: it lies behind
every sync token and only /messages returns it.

Paginating backwards, each batch read is checked for gaps (prev events the
timeline lacks: the history before our server joined, or a hole that
get_missing_events did not fill), and so is, on the first, the event just
after the token (the oldest the client holds, whose prevs the page starts
at). The first time a request meets one, the ``backfiller`` (federation:
``GET /backfill`` from a resident server, every event through the inbound
checks) is asked for older events and the same batch is read again, so the
chunk comes out in order with the fetched history in its place.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any, Protocol

import orjson

from homeserver.errors import forbidden, not_found
from homeserver.rooms.filters import EventFilter
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService, not_in_room
from homeserver.rooms.state_lists import StateLists
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo, StateKey
from homeserver.rooms.store.state_store import StateNids
from homeserver.rooms.visibility import Visibility
from homeserver.streams.tokens import TopoPosition, pagination_position

MAX_PAGES = 10
MEMBER = "m.room.member"
MAX_BACKFILLS_PER_REQUEST = 3


class Backfiller(Protocol):
    async def backfill(self, room: RoomInfo, from_ids: Sequence[str], limit: int) -> int:
        """Fetch history older than the missing events ``from_ids`` (and those
        events) and store it as backfilled; how many events were stored."""


class RoomReader:
    def __init__(
        self, rooms: RoomService, visibility: Visibility, serializer: EventSerializer
    ) -> None:
        self.rooms = rooms
        self.visibility = visibility
        self.serializer = serializer
        # /state and /members answers, kept whole per state (see its design note).
        self.lists = StateLists(serializer)
        # History from other servers; None without federation. Bound late by federation
        # (FederatedRooms.attach), which is built on the room service: a real cycle.
        self.backfiller: Backfiller | None = None

    async def _view(self, user_id: str, room: RoomInfo) -> StoredEvent | None:
        """Which state the user may read: None for the current state, else their
        leave or ban event (state is frozen there); 403 for outsiders of a
        non-world-readable room."""
        m = await self.rooms.members.get(room.room_nid, user_id)
        membership = None if m is None else m.membership
        ev = None
        if m is not None and membership in ("leave", "ban"):
            ev = (await self.rooms.events.by_nids([m.event_nid])).get(m.event_nid)
        return await self._frozen_at(room, membership, ev)

    async def _frozen_at(
        self, room: RoomInfo, membership: str | None, ev: StoredEvent | None
    ) -> StoredEvent | None:
        """``_view``'s answer for a user with ``membership`` (``ev`` its event)."""
        if membership == "join" or await self.visibility.world_readable(room):
            return None
        if ev is not None and membership in ("leave", "ban") and ev.state_group is not None:
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

    async def state_json(self, user_id: str, room_id: str) -> orjson.Fragment:
        """``state`` as one JSON array, kept whole until the state changes
        (``GET /state``; ``state_lists.py``)."""
        room = await self.rooms.room_or_forbidden(room_id)
        left = await self._view_current(user_id, room)
        group = None if left is None else left.state_group
        key, source = await self._state_source(room, group)

        async def events() -> list[StoredEvent]:
            return list((await self.rooms.events_for_state(source)).values())

        return await self.lists.answer(key, source, "state", events)

    async def _view_current(self, user_id: str, room: RoomInfo) -> StoredEvent | None:
        """``_view`` for a whole-state read: the user's membership from the room's cached
        current state (the event the membership row names), so that a repeated read of a
        big room runs no statement."""
        current = await self.rooms.state.current_state_cached(room.room_nid)
        key = (MEMBER, user_id)
        key_nid = (await self.rooms.rooms.key_nids([key])).get(key)
        event_nid = None if key_nid is None else current.get(key_nid)
        ev = None
        if event_nid is not None:
            ev = (await self.rooms.events.by_nids([event_nid])).get(event_nid)
        return await self._frozen_at(room, None if ev is None else ev.event.membership, ev)

    async def _state_source(self, room: RoomInfo, group: int | None) -> tuple[Hashable, StateNids]:
        """The cached state-nids map of the room's current state (``group`` None) or of a
        state group, and what ``state_lists`` keeps its answers under."""
        if group is None:
            # The whole current state, kept until it changes (state_store's design note).
            return ("room", room.room_nid), await self.rooms.state.current_state_cached(
                room.room_nid
            )
        return ("group", group), await self.rooms.state.state_at_group(group)

    async def state_event(
        self, user_id: str, room_id: str, event_type: str, state_key: str
    ) -> StoredEvent:
        room = await self.rooms.room_or_forbidden(room_id)
        key = (event_type, state_key)
        found = (await self._state(user_id, room, [key])).get(key)
        if found is None:
            raise not_found("Event not found")
        return found

    async def members_json(
        self,
        user_id: str,
        room_id: str,
        at: str | None,
        membership: str | None,
        not_membership: str | None,
    ) -> orjson.Fragment:
        """``GET /members``' chunk: one JSON array, kept whole for each filter until the
        state changes (``state_lists.py``)."""
        room = await self.rooms.room_or_forbidden(room_id)
        left = await self._view_current(user_id, room)
        await self.rooms.wait_full_state(room)
        group = None if left is None else left.state_group
        if at is not None:
            # The state at a position, but never past the user's own leave.
            pos = pagination_position(at, "at").stream
            if left is not None and left.stream_ordering is not None:
                pos = min(pos, left.stream_ordering)
            last = await self.rooms.events.last_event_before(room.room_nid, pos + 1)
            if last is not None and last.state_group is not None:
                group = last.state_group
        key, source = await self._state_source(room, group)

        async def events() -> list[StoredEvent]:
            state = await self.rooms.events_for_state(source)
            # Listed by user id (a member event's state key). Sorted as strings, which
            # makes no objects for the collector to walk (pairs would, one per member).
            users = sorted(k[1] for k in state if k[0] == MEMBER)
            found = [state[(MEMBER, u)] for u in users]
            if membership is not None or not_membership is not None:
                found = [
                    s
                    for s in found
                    if (membership is None or s.event.membership == membership)
                    and (not_membership is None or s.event.membership != not_membership)
                ]
            return found

        return await self.lists.answer(key, source, ("members", membership, not_membership), events)

    async def joined_members(self, user_id: str, room_id: str) -> dict[str, dict[str, Any]]:
        room = await self.rooms.room_or_forbidden(room_id)
        me = await self.rooms.members.get(room.room_nid, user_id)
        if me is None or me.membership != "join":
            raise not_in_room()
        await self.rooms.wait_full_state(room)
        joined = await self.rooms.members.members(room.room_nid, ("join",))
        found = await self.rooms.events.by_nids(m.event_nid for m in joined)
        out: dict[str, dict[str, Any]] = {}
        for m in joined:
            ev = found.get(m.event_nid)
            content = ev.event.content if ev is not None else {}
            # Both keys always, null when unset: clients (and Sytest) read them
            # as Synapse sends them; the schema's fields are optional strings.
            name, avatar = content.get("displayname"), content.get("avatar_url")
            out[m.user_id] = {
                "display_name": name if isinstance(name, str) else None,
                "avatar_url": avatar if isinstance(avatar, str) else None,
            }
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

    async def event_by_id(
        self, user_id: str, device_id: str | None, event_id: str
    ) -> dict[str, Any]:
        """The legacy ``GET /events/{eventId}``: like ``get_event`` without the room id."""
        stored = await self.rooms.events.by_id(event_id)
        room = None
        if stored is not None and stored.stream_ordering is not None:
            room = (await self.rooms.rooms.rooms_by_nid([stored.room_nid])).get(stored.room_nid)
        if stored is None or room is None:
            raise not_found("Event not found")
        if not await self.visibility.filter(user_id, room, [stored]):
            raise not_found("Event not found")
        (out,) = await self.serializer.serialize([stored], user_id=user_id, device_id=device_id)
        return out

    async def _page(
        self,
        user_id: str,
        room: RoomInfo,
        position: TopoPosition,
        bound: TopoPosition | None,
        limit: int,
        backwards: bool,
        flt: EventFilter,
    ) -> tuple[list[StoredEvent], TopoPosition, bool]:
        """Up to ``limit`` visible events from ``position`` in topological order;
        (events, next position, more?)."""
        out: list[StoredEvent] = []
        cursor = position
        more = True
        backfills = 0
        for _ in range(MAX_PAGES + MAX_BACKFILLS_PER_REQUEST):
            batch = await self.rooms.events.room_topological(
                room.room_nid, start=cursor, bound=bound, limit=limit, backwards=backwards
            )
            if backwards and self.backfiller is not None and backfills < MAX_BACKFILLS_PER_REQUEST:
                nids = [s.event_nid for s in batch]
                if cursor == position:
                    # The page starts where the client's token sits: the event just
                    # after it (the oldest it has seen) may be the one with the hole.
                    edge = await self.rooms.events.room_topological(
                        room.room_nid, start=position, bound=None, limit=1, backwards=False
                    )
                    nids += [s.event_nid for s in edge]
                gaps = await self.rooms.events.gaps_before(nids)
                if gaps:
                    backfills += 1
                    if await self.backfiller.backfill(room, gaps, max(limit, 50)):
                        continue  # read the same batch again, history now in place
            if len(batch) < limit:
                more = False
            visible = await self.visibility.filter(user_id, room, batch)
            for s in visible:
                if len(out) >= limit:
                    break
                if flt.matches(s.event):
                    out.append(s)
            if len(out) >= limit:
                cursor = _after(out[-1], backwards)
                more = True
                break
            if batch:
                cursor = _after(batch[-1], backwards)
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
            position = pagination_position(from_token)
        elif backwards:
            position = TopoPosition(None, await self.rooms.events.current_position())
        else:
            position = _BEFORE_ALL
        bound = pagination_position(to_token, "to") if to_token is not None else None
        events, cursor, more = await self._page(
            user_id, room, position, bound, limit, backwards, flt
        )
        chunk = await self.serializer.serialize(events, user_id=user_id, device_id=device_id)
        out: dict[str, Any] = {"chunk": chunk, "start": from_token or position.encode()}
        # A non-empty chunk always carries `end` (as Synapse answers): the client learns that
        # history is exhausted from the next, empty page, which has no `end`. An empty chunk
        # that stopped early (everything filtered out) still gives `end` to go on from.
        if events or (more and cursor != position):
            out["end"] = cursor.encode()
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

    async def around(
        self,
        user_id: str,
        room: RoomInfo,
        stored: StoredEvent,
        before_limit: int,
        after_limit: int,
        flt: EventFilter,
    ) -> tuple[list[StoredEvent], TopoPosition, list[StoredEvent], TopoPosition]:
        """Events before (newest first) and after ``stored`` in topological order,
        with the positions to paginate on from either end."""
        start = _after(stored, True)
        end = _after(stored, False)
        before: list[StoredEvent] = []
        after: list[StoredEvent] = []
        if before_limit:
            before, start, _ = await self._page(user_id, room, start, None, before_limit, True, flt)
        if after_limit:
            after, end, _ = await self._page(user_id, room, end, None, after_limit, False, flt)
        return before, start, after, end

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
        before, start, after, end = await self.around(
            user_id, room, stored, limit // 2, limit - limit // 2, flt
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
            "start": start.encode(),
            "end": end.encode(),
            "state": await ser.serialize(list(state.values())),
        }


# Before every event: depths start at 1 (the create event).
_BEFORE_ALL = TopoPosition(0, 0)


def _after(stored: StoredEvent, backwards: bool) -> TopoPosition:
    """The position just past ``stored`` in the direction of travel (backwards
    bounds are inclusive, forwards exclusive, as ``room_topological`` reads them)."""
    so = stored.stream_ordering
    assert so is not None
    return TopoPosition(stored.event.depth, so - 1 if backwards else so)
