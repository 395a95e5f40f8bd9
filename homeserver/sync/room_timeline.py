"""The ``timeline``, ``state`` and ``summary`` of one room in a /sync answer.

Timeline: the newest ``limit`` events in ``(since, upto]`` that the user may
see (history visibility) and that pass the timeline filter; ``limited``
when older events in the range were left out, with ``prev_batch`` for
/messages. State: the full state before the timeline for an initial sync,
``full_state`` or a newly joined room; otherwise, for a limited timeline,
the state events in the gap (latest per key).

Lazy-loading members (spec: "Lazy-loading room members"): with
``lazy_load_members`` the state keeps only the membership events of the
timeline's senders (and the user's own). A bounded in-memory record per
device of the memberships already sent lets later syncs skip them unless
``include_redundant_members`` is set; after a restart the record is empty,
so memberships are sent again, which is always correct.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.visibility import Visibility
from homeserver.streams.tokens import StreamToken
from homeserver.sync.model import SyncContext
from homeserver.sync.store import SyncStore
from homeserver.userdata.filtering import event_matches, project_fields

MEMBER = "m.room.member"
NAME = "m.room.name"
CANONICAL_ALIAS = "m.room.canonical_alias"
MAX_FETCH = 400
_SENT_CACHE_SIZE = 10_000


class RoomTimeline:
    def __init__(
        self,
        rooms: RoomService,
        visibility: Visibility,
        serializer: EventSerializer,
        store: SyncStore,
    ) -> None:
        self.rooms = rooms
        self.visibility = visibility
        self.serializer = serializer
        self.store = store
        # (user, device, room) -> members whose membership this device has been sent
        self._sent: OrderedDict[tuple[str, str, str], dict[str, str]] = OrderedDict()

    def _sent_for(self, ctx: SyncContext, room_id: str, reset: bool) -> dict[str, str]:
        """member user id -> id of the membership event this device was last sent."""
        key = (ctx.user_id, ctx.req.device_id, room_id)
        sent = self._sent.pop(key, None)
        if sent is None or reset:
            sent = {}
        self._sent[key] = sent
        while len(self._sent) > _SENT_CACHE_SIZE:
            self._sent.popitem(last=False)
        return sent

    async def build(
        self, ctx: SyncContext, room: RoomInfo, upto: int, full: bool, newly_joined: bool = False
    ) -> dict[str, Any]:
        """``newly_joined``: the user joined since the token. Its timeline is then read
        from the room's history as for an initial sync (the events before the join that
        history visibility lets the user see), and is ``limited`` so the client knows
        to paginate (as Synapse answers, which clients expect)."""
        rf = ctx.flt.room
        limit = ctx.limit
        since = None if newly_joined else ctx.since_events
        filtered = rf.timeline.types is not None or rf.timeline.senders is not None
        window = min(MAX_FETCH, (limit + 1) * 4) if filtered else limit + 1
        # A filter or history visibility may leave a page short: read further back, page
        # by page, until the limit is reached, the range is exhausted or MAX_FETCH events
        # were read.
        matching: list[StoredEvent] = []
        before: int | None = upto
        fetched = 0
        while True:
            batch = await self.rooms.events.room_stream(
                room.room_nid, after=since, before=before, limit=window, backwards=True
            )
            fetched += len(batch)
            reached_since = len(batch) < window
            visible = await self._visible(ctx, room, batch[::-1])
            matching = [
                s
                for s in visible
                if event_matches(rf.timeline, s.event.pdu)
                and (s.event.state_key is not None or s.event.sender not in ctx.ignored)
            ] + matching
            # History the user may not see also leaves a page short (such as messages
            # from while they were away): read on for the state events still shown.
            short = filtered or len(visible) < len(batch)
            if not short or reached_since or len(matching) > limit or fetched >= MAX_FETCH:
                break
            oldest = batch[-1].stream_ordering
            assert oldest is not None
            before = oldest - 1
        timeline = matching[-limit:]
        limited = len(matching) > limit or not reached_since
        start = timeline[0].stream_ordering if timeline else upto + 1
        # ``prev_batch``: before the timeline; but when the timeline was read from the
        # room's history and all of it fitted, it is the sync position (as Synapse gives
        # it, and Sytest expects /messages from it to repeat the timeline).
        assert start is not None
        prev_batch = start - 1
        if since is None and not limited:
            prev_batch = upto
        limited = limited or newly_joined
        state = await self._state(ctx, room, since, start, full, limited, timeline)
        lazy = rf.state.lazy_load_members
        if lazy:
            state = await self._lazy_members(ctx, room, state, timeline, start, full)
        state = [s for s in state if event_matches(rf.state, s.event.pdu)]
        ser = self.serializer
        fields = ctx.flt.event_fields
        if ctx.flt.event_format == "federation":
            # The events as servers exchange them (spec: Filter ``event_format``).
            events = [_federation_format(s) for s in timeline]
            state_events = [_federation_format(s) for s in state]
        else:
            events = await ser.serialize(
                timeline, with_room_id=False, user_id=ctx.user_id, device_id=ctx.req.device_id
            )
            state_events = await ser.serialize(state, with_room_id=False)
        out: dict[str, Any] = {
            "timeline": {
                "events": [project_fields(e, fields) for e in events],
                "limited": limited,
                "prev_batch": StreamToken(events=max(0, prev_batch)).encode(),
            },
            "state": {"events": [project_fields(e, fields) for e in state_events]},
        }
        if full or any(s.event.type == MEMBER for s in (*timeline, *state)):
            out["summary"] = await self._summary(ctx, room)
        return out

    async def _visible(
        self, ctx: SyncContext, room: RoomInfo, events: list[StoredEvent]
    ) -> list[StoredEvent]:
        """History visibility, except that events still in the room's current state are
        shown to a member (as Synapse does: state set while they could not see the room,
        such as a join while they were away, is current state they may read anyway)."""
        visible = await self.visibility.filter(ctx.user_id, room, events)
        shown = {s.event_nid for s in visible}
        member = await self.rooms.members.get(room.room_nid, ctx.user_id)
        if member is None or member.membership != "join":
            return visible
        for s in events:
            if s.event_nid in shown or not s.event.is_state():
                continue
            etype, key = s.event.state_tuple()
            current = await self.rooms.current_state_event(room, etype, key)
            if current is not None and current.event_nid == s.event_nid:
                shown.add(s.event_nid)
        return [s for s in events if s.event_nid in shown]

    async def _state(
        self,
        ctx: SyncContext,
        room: RoomInfo,
        since: int | None,
        start: int,
        full: bool,
        limited: bool,
        timeline: list[StoredEvent],
    ) -> list[StoredEvent]:
        if full and timeline and timeline[0].state_group is not None:
            return await self._state_before(timeline[0])
        if full:
            before = await self.rooms.events.last_event_before(room.room_nid, start)
            if before is None:
                return []
            return list((await self.rooms.state_at(before.state_group)).values())
        if limited and since is not None:
            latest: dict[tuple[str, str], StoredEvent] = {}
            for s in await self.rooms.events.state_events_between(room.room_nid, since, start):
                latest[s.event.state_tuple()] = s
            return list(latest.values())
        return []

    async def _state_before(self, first: StoredEvent) -> list[StoredEvent]:
        """The state just before ``first``: its own state group, with its own entry put back
        to what it replaced. (The stream before ``first`` may hold no state at all: in a room
        joined over federation the only earlier event here is the invite, an outlier.)"""
        state = await self.rooms.state_at(first.state_group)
        if first.event.is_state():
            key = first.event.state_tuple()
            own = state.get(key)
            if own is not None and own.event_nid == first.event_nid:
                del state[key]
                prev = first.prev_state_event_nid
                if prev is not None:
                    found = await self.rooms.events.by_nids([prev])
                    if prev in found:
                        state[key] = found[prev]
        return list(state.values())

    async def _lazy_members(
        self,
        ctx: SyncContext,
        room: RoomInfo,
        state: list[StoredEvent],
        timeline: list[StoredEvent],
        start: int,
        full: bool,
    ) -> list[StoredEvent]:
        """Keep only the timeline senders' (and the user's own) membership events."""
        sent = self._sent_for(ctx, room.room_id, reset=full)
        senders = {s.event.sender for s in timeline}
        keep = senders | {ctx.user_id} if full else senders
        out = [s for s in state if s.event.type != MEMBER or s.event.state_key in keep]
        have = {s.event.state_key for s in (*out, *timeline) if s.event.type == MEMBER}
        missing = sorted(senders - have)
        if missing:
            before = await self.rooms.events.last_event_before(room.room_nid, start)
            if before is not None:
                found = await self.rooms.state_at(
                    before.state_group, [(MEMBER, u) for u in missing]
                )
                out.extend(found.values())
        if not full and not ctx.flt.room.state.include_redundant_members:
            out = [
                s
                for s in out
                if s.event.type != MEMBER or sent.get(s.event.state_key or "") != s.event.event_id
            ]
        for s in (*out, *timeline):
            if s.event.type == MEMBER and s.event.state_key is not None:
                sent[s.event.state_key] = s.event.event_id
        return out

    async def _summary(self, ctx: SyncContext, room: RoomInfo) -> dict[str, Any]:
        counts = await self.store.member_counts(room.room_nid)
        out: dict[str, Any] = {
            "m.joined_member_count": counts.get("join", 0),
            "m.invited_member_count": counts.get("invite", 0),
        }
        # Heroes are for naming a room that has no name (spec: required only when
        # m.room.name and m.room.canonical_alias are unset or empty); a named room
        # has none, as Synapse answers.
        if not await self._is_named(room):
            out["m.heroes"] = await self.store.heroes(room.room_nid, ctx.user_id)
        return out

    async def _is_named(self, room: RoomInfo) -> bool:
        state = await self.rooms.current_state(room, [(NAME, ""), (CANONICAL_ALIAS, "")])
        name = state.get((NAME, ""))
        alias = state.get((CANONICAL_ALIAS, ""))
        return bool(
            (name is not None and name.event.content.get("name"))
            or (alias is not None and alias.event.content.get("alias"))
        )


def _federation_format(s: StoredEvent) -> dict[str, Any]:
    """The PDU, with its ``event_id`` (which room versions 3+ leave implicit)."""
    return {**s.event.pdu, "event_id": s.event.event_id}
