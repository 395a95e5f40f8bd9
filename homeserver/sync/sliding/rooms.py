"""One room of a sliding sync answer: timeline, required state, name, counts.

A room is sent *initial* (``"initial": true``: its newest ``timeline_limit``
events and the whole of its required state) the first time it is sent on a
connection, or when the user's membership changed since (an invite
accepted). Otherwise only what is new since it was last sent
(``RoomSent.sent_upto``): the timeline events after that position, the
required state events that changed, and everything again when the
``required_state`` asked for changed. A room with nothing new is not sent.
Invites and knocks carry the stripped state the user may see instead.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.membership_store import Membership
from homeserver.rooms.store.rooms_store import RoomInfo, StateKey
from homeserver.rooms.visibility import Visibility
from homeserver.streams.tokens import StreamToken
from homeserver.sync.sliding.connections import RoomSent
from homeserver.sync.sliding.lists import Candidate
from homeserver.sync.sliding.request import RoomParams
from homeserver.sync.sliding.required_state import MEMBER, matches, needed_keys
from homeserver.sync.store import SyncStore

NAME = ("m.room.name", "")
AVATAR = ("m.room.avatar", "")
NAMING_TYPES = {"m.room.name", "m.room.avatar", MEMBER}

Stripped = Callable[[RoomInfo, Membership], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class RoomFacts:
    """Read once for every room of an answer (set-based)."""

    names: dict[int, dict[StateKey, dict[str, Any]]]
    counts: dict[int, dict[str, int]]
    unread: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class _Range:
    """What to send of a room: changes after ``since`` (None: everything), the timeline
    after ``timeline_after`` (None: the newest events), both up to ``upto``."""

    since: int | None
    timeline_after: int | None
    upto: int


def params_json(params: RoomParams) -> str:
    return json.dumps([list(p) for p in params.required_state])


def needs_sending(
    c: Candidate,
    params: RoomParams,
    prev: RoomSent | None,
    latest: int,
    now: int,
    read_since: bool = False,
) -> bool:
    """Has the room anything to send on this connection (cheap: no reads)?
    ``read_since``: the user's own read receipt moved, so its unread counts changed."""
    m = c.membership
    if (
        prev is None
        or prev.membership != m.membership
        or prev.required_state != params_json(params)
    ):
        return True
    if m.membership == "join" and (read_since or params.timeline_limit > prev.timeline_limit):
        return True
    if m.membership in ("invite", "knock"):
        return False
    upto = now if m.membership == "join" else m.stream_ordering
    return prev.sent_upto < min(latest, upto)


class RoomBodies:
    def __init__(
        self,
        rooms: RoomService,
        visibility: Visibility,
        serializer: EventSerializer,
        sync_store: SyncStore,
        stripped: Stripped,
    ) -> None:
        self.rooms = rooms
        self.visibility = visibility
        self.serializer = serializer
        self.sync_store = sync_store
        self.stripped = stripped

    async def build(
        self,
        user_id: str,
        device_id: str,
        c: Candidate,
        params: RoomParams,
        prev: RoomSent | None,
        now: int,
        latest: int,
        facts: RoomFacts,
        read_since: bool = False,
    ) -> tuple[dict[str, Any], RoomSent] | None:
        """The room's body and what to record as sent, or None when nothing is new."""
        m = c.membership
        rs = params_json(params)
        initial = prev is None or prev.membership != m.membership
        if m.membership in ("invite", "knock"):
            if not initial:
                return None
            key = "invite_state" if m.membership == "invite" else "knock_state"
            body: dict[str, Any] = {
                key: await self.stripped(c.info, m),
                "initial": True,
                "bump_stamp": c.bump_stamp,
            }
            if c.is_dm:
                body["is_dm"] = True
            return body, RoomSent(m.stream_ordering, m.membership, rs, params.timeline_limit)
        upto = now if m.membership == "join" else m.stream_ordering
        since = None if prev is None or initial else prev.sent_upto
        state_again = initial or (prev is not None and prev.required_state != rs)
        # A larger timeline_limit than the room was sent with (a list entry opened
        # through a subscription): send the longer timeline again.
        expanded = (
            prev is not None
            and not initial
            and m.membership == "join"
            and params.timeline_limit > prev.timeline_limit
        )
        counts_changed = read_since and m.membership == "join"
        nothing_new = since is not None and since >= min(latest, upto)
        if nothing_new and not (state_again or expanded or counts_changed):
            return None
        body, sent_state = await self._timeline_and_state(
            user_id,
            device_id,
            c.info,
            params,
            _Range(since, None if expanded else since, upto),
            state_again,
        )
        if initial:
            body["initial"] = True
        if expanded:
            body["unstable_expanded_timeline"] = True
        naming = initial or any(t in NAMING_TYPES for t in sent_state)
        await self._naming(body, c, user_id, facts, naming)
        body["bump_stamp"] = c.bump_stamp
        if c.is_dm:
            body["is_dm"] = True
        return body, RoomSent(upto, m.membership, rs, params.timeline_limit)

    async def _timeline_and_state(
        self,
        user_id: str,
        device_id: str,
        room: RoomInfo,
        params: RoomParams,
        span: _Range,
        full_state: bool,
    ) -> tuple[dict[str, Any], set[str]]:
        limit = params.timeline_limit
        since, upto = span.since, span.upto
        batch = await self.rooms.events.room_stream(
            room.room_nid, after=span.timeline_after, before=upto, limit=limit + 1, backwards=True
        )
        batch.reverse()
        visible = await self.visibility.filter(user_id, room, batch)
        timeline = visible[-limit:] if limit > 0 else []
        limited = len(batch) > limit
        senders = {s.event.sender for s in timeline}
        state = await self._required_state(user_id, room, params, senders, since, upto, full_state)
        ser = self.serializer
        events = await ser.serialize(
            timeline, with_room_id=False, user_id=user_id, device_id=device_id
        )
        start = timeline[0].stream_ordering if timeline else None
        start = upto + 1 if start is None else start
        prev_batch = StreamToken(events=max(0, start - 1)).encode()
        live = [s for s in timeline if since is not None and (s.stream_ordering or 0) > since]
        body: dict[str, Any] = {
            "timeline": events,
            "required_state": await ser.serialize(state, with_room_id=False),
            "prev_batch": prev_batch,
            "limited": limited,
            "num_live": len(live),
        }
        return body, {s.event.type for s in (*state, *timeline) if s.event.is_state()}

    async def _required_state(
        self,
        user_id: str,
        room: RoomInfo,
        params: RoomParams,
        senders: set[str],
        since: int | None,
        upto: int,
        full: bool,
    ) -> list[StoredEvent]:
        pairs = params.required_state
        if not pairs:
            return []
        if full:
            return await self._state_at(room, pairs, user_id, senders, upto)
        latest: dict[StateKey, StoredEvent] = {}
        assert since is not None
        for s in await self.rooms.events.state_events_between(room.room_nid, since, upto + 1):
            key = s.event.state_tuple()
            if matches(pairs, user_id, senders, key):
                latest[key] = s
        # Members who sent in the timeline ($LAZY) but whose membership did not change.
        lazy = [(MEMBER, u) for u in sorted(senders) if (MEMBER, u) not in latest]
        if lazy and any(matches(pairs, user_id, senders, k) for k in lazy):
            found = await self.rooms.current_state(room, lazy)
            latest.update({k: v for k, v in found.items() if matches(pairs, user_id, senders, k)})
        return list(latest.values())

    async def _state_at(
        self,
        room: RoomInfo,
        pairs: Sequence[tuple[str, str]],
        user_id: str,
        senders: set[str],
        upto: int,
    ) -> list[StoredEvent]:
        """The required state as of ``upto`` (a left room's state at the leave)."""
        keys = needed_keys(pairs, user_id, senders)
        last = await self.rooms.events.last_event_before(room.room_nid, upto + 1)
        if last is None:
            return []
        state = await self.rooms.state_at(last.state_group, keys)
        return [s for k, s in state.items() if matches(pairs, user_id, senders, k)]

    async def _naming(
        self, body: dict[str, Any], c: Candidate, user_id: str, facts: RoomFacts, naming: bool
    ) -> None:
        nid = c.info.room_nid
        counts = facts.counts.get(nid, {})
        body["joined_count"] = counts.get("join", 0)
        body["invited_count"] = counts.get("invite", 0)
        if c.membership.membership == "join":
            notes, highlights = facts.unread.get(c.info.room_id, (0, 0))
            body["notification_count"] = notes
            body["highlight_count"] = highlights
        if not naming:
            return
        state = facts.names.get(nid, {})
        name = state.get(NAME, {}).get("name")
        if isinstance(name, str) and name:
            body["name"] = name
        avatar = state.get(AVATAR, {}).get("url")
        if isinstance(avatar, str) and avatar:
            body["avatar"] = avatar
        if "name" not in body:
            body["heroes"] = await self._heroes(c.info, user_id)

    async def _heroes(self, room: RoomInfo, user_id: str) -> list[dict[str, Any]]:
        """Up to 5 other members, with their display names and avatars (MSC4186)."""
        ids = await self.sync_store.heroes(room.room_nid, user_id)
        found = await self.rooms.current_state(room, [(MEMBER, u) for u in ids])
        out = []
        for u in ids:
            hero: dict[str, Any] = {"user_id": u}
            ev = found.get((MEMBER, u))
            content = ev.event.content if ev is not None else {}
            for src, dst in (("displayname", "displayname"), ("avatar_url", "avatar_url")):
                if isinstance(content.get(src), str):
                    hero[dst] = content[src]
            out.append(hero)
        return out
