"""Simplified sliding sync (MSC4186): one answer for one connection position.

Design note
-----------
One build reads every stream's position once (``now``, as /sync does) and
describes that moment: the candidate rooms and their list windows, the
rooms to send (those in a list's ranges or subscribed) with what is new for
each since it was last sent on this connection, and the extensions between
the position's token and ``now``. An answer that sends something is saved
as a new position (``connections.py``); an empty one keeps the client's
``pos``, so idle polling writes nothing.

Long-poll: as /sync, the request registers with the notifier before it
reads the positions, so a change committed meanwhile wakes it; it answers
as soon as a build has something (or the list counts changed), else at
``timeout``. A request without ``pos`` answers at once.

Partial-state rooms (joined over federation with the members omitted) are left
out of a list or subscription whose ``required_state`` asks for members they may
lack, until their state is whole; then they come as any room not sent yet.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.rooms.service import RoomService
from homeserver.streams.tokens import StreamToken
from homeserver.sync.builder import SyncBuilder
from homeserver.sync.model import SyncContext, SyncRequest
from homeserver.sync.sliding.connections import ConnectionStore, Position, RoomSent
from homeserver.sync.sliding.extensions import ExtensionScope, SlidingExtensions, is_empty
from homeserver.sync.sliding.lists import Candidate, RoomLists
from homeserver.sync.sliding.request import RoomParams, SlidingRequest, parse_params
from homeserver.sync.sliding.required_state import needs_all_members
from homeserver.sync.sliding.rooms import AVATAR, NAME, RoomBodies, RoomFacts, needs_sending
from homeserver.sync.sliding.store import SlidingStore

MAX_ROOMS_PER_ANSWER = 1000


def unknown_pos() -> MatrixError:
    return MatrixError(400, "M_UNKNOWN_POS", "Unknown or expired position; start again")


@dataclass(frozen=True)
class SlidingCall:
    user_id: str
    device_id: str
    user_nid: int
    pos: str | None
    timeout_ms: int
    body: SlidingRequest


@dataclass
class _Answer:
    body: dict[str, Any]
    token: str
    counts: dict[str, int]
    sent: dict[str, RoomSent]
    empty: bool


class SlidingSync:
    def __init__(
        self,
        rooms: RoomService,
        builder: SyncBuilder,
        connections: ConnectionStore,
        store: SlidingStore,
        lists: RoomLists,
        bodies: RoomBodies,
        extensions: SlidingExtensions,
        clock: Clock,
    ) -> None:
        self.rooms = rooms
        self.builder = builder
        self.connections = connections
        self.store = store
        self.lists = lists
        self.bodies = bodies
        self.extensions = extensions
        self.clock = clock

    async def _position(self, call: SlidingCall) -> Position:
        now_ms = self.clock.now_ms()
        conn_id = call.body.conn_id
        if call.pos is None:
            return await self.connections.start(call.user_id, call.device_id, conn_id, now_ms)
        if not call.pos.isdigit() or len(call.pos) > 18:
            raise unknown_pos()
        pos = await self.connections.load(
            call.user_id, call.device_id, conn_id, int(call.pos), now_ms
        )
        if pos is None:
            raise unknown_pos()
        await self.connections.acknowledge(pos, now_ms)
        return pos

    async def sync(self, call: SlidingCall) -> dict[str, Any]:
        pos = await self._position(call)
        subs = dict(pos.subscriptions)
        for room_id in call.body.unsubscribe_rooms:
            subs.pop(room_id, None)
        subs.update({r: p.to_json() for r, p in call.body.room_subscriptions.items()})
        since = None if pos.stream_token is None else StreamToken.parse(pos.stream_token, "pos")
        with self.builder.notifier.listen(call.user_id) as listener:
            answer = await self._build(call, pos, subs, since)
            if call.pos is not None and call.timeout_ms > 0:
                deadline = time.monotonic() + call.timeout_ms / 1000
                while answer.empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not await listener.wait(remaining):
                        break
                    answer = await self._build(call, pos, subs, since)
        if answer.empty and call.pos is not None and subs == pos.subscriptions:
            return {"pos": call.pos, **answer.body}
        new_pos = await self.connections.save(
            pos, answer.token, subs, answer.counts, answer.sent, self.clock.now_ms()
        )
        return {"pos": str(new_pos), **answer.body}

    async def _build(
        self,
        call: SlidingCall,
        pos: Position,
        subs: dict[str, Any],
        since: StreamToken | None,
    ) -> _Answer:
        now = await self.builder.positions()
        ctx = SyncContext(
            SyncRequest(call.user_id, call.device_id, call.user_nid), since=since, now=now
        )
        if call.body.extensions.e2ee.enabled:
            # Device-list changes need the membership changes since the position.
            await self.builder.memberships(ctx)
        cands = await self.lists.candidates(
            call.user_nid, call.user_id, None if since is None else since.events, now.events
        )
        lists_out: dict[str, Any] = {}
        counts: dict[str, int] = {}
        windows: dict[str, list[str]] = {}
        wanted: dict[str, RoomParams] = {}
        partial = await self._partial(call, cands, subs)
        whole = {r: c for r, c in cands.items() if r not in partial}
        for name, cfg in call.body.lists.items():
            wait = partial and needs_all_members(cfg.params.required_state, self.rooms.server_name)
            count, window = await self.lists.window(cfg, whole if wait else cands)
            counts[name] = count
            windows[name] = window
            lists_out[name] = {"count": count}
            for room_id in window:
                wanted[room_id] = wanted.get(room_id, cfg.params).merge(cfg.params)
        for room_id, raw in subs.items():
            if room_id in cands:
                p = parse_params(raw, "room_subscriptions")
                if room_id in partial and needs_all_members(
                    p.required_state, self.rooms.server_name
                ):
                    continue  # sent once its state is whole
                wanted[room_id] = wanted.get(room_id, p).merge(p)
        chosen = [cands[r] for r in list(wanted)[:MAX_ROOMS_PER_ANSWER]]
        read = await self._own_receipts(call, chosen, since, now)
        rooms_out, sent = await self._rooms(call, chosen, wanted, pos, now.events, read)
        joined = {r for r, c in cands.items() if c.membership.membership == "join"}
        initial = {r for r, b in rooms_out.items() if b.get("initial")}
        scope = ExtensionScope(windows, list(subs), joined, initial)
        ext = await self.extensions.build(ctx, call.body.extensions, scope)
        body: dict[str, Any] = {"lists": lists_out, "rooms": rooms_out, "extensions": ext}
        empty = not rooms_out and counts == pos.list_counts and is_empty(ext)
        return _Answer(body, now.encode(), counts, sent, empty)

    async def _partial(
        self, call: SlidingCall, cands: dict[str, Candidate], subs: dict[str, Any]
    ) -> set[str]:
        """The joined rooms with partial state (members omitted at our join, merged
        later in place), when a list or subscription asks for members they may lack
        (``needs_all_members``): those leave such rooms out until whole, then send
        them as new (the merge wakes the user's long-polls; see /sync's own rule)."""
        partial_state = self.builder.src.partial_state
        if partial_state is None:
            return set()
        asked = [cfg.params.required_state for cfg in call.body.lists.values()]
        asked += [parse_params(raw, "room_subscriptions").required_state for raw in subs.values()]
        if not any(needs_all_members(pairs, self.rooms.server_name) for pairs in asked):
            return set()
        joined = {c.info.room_nid: r for r, c in cands.items() if c.membership.membership == "join"}
        if not joined:
            return set()
        return {joined[n] for n in await partial_state.partial_among(list(joined))}

    async def _own_receipts(
        self,
        call: SlidingCall,
        chosen: list[Candidate],
        since: StreamToken | None,
        now: StreamToken,
    ) -> set[str]:
        """Rooms where the user's own read receipt moved since the position (read on
        another device): their notification counts changed, so they are sent again."""
        if since is None or since.receipts >= now.receipts:
            return set()
        joined = [c.info.room_id for c in chosen if c.membership.membership == "join"]
        records = await self.builder.src.receipts.store.since(
            joined, since.receipts, now.receipts, call.user_id
        )
        return {r.room_id for r in records if r.user_id == call.user_id}

    async def _rooms(
        self,
        call: SlidingCall,
        chosen: list[Candidate],
        wanted: dict[str, RoomParams],
        pos: Position,
        now: int,
        read: set[str],
    ) -> tuple[dict[str, Any], dict[str, RoomSent]]:
        latest = await self.store.latest_positions([c.info.room_nid for c in chosen], now)
        chosen = [
            c
            for c in chosen
            if needs_sending(
                c,
                wanted[c.info.room_id],
                pos.rooms.get(c.info.room_id),
                latest.get(c.info.room_nid, 0),
                now,
                c.info.room_id in read,
            )
        ]
        nids = [c.info.room_nid for c in chosen]
        joined = [c.info for c in chosen if c.membership.membership == "join"]
        unread = await self.builder.src.notifications.unread_counts(
            call.user_id, joined, False, now
        )
        facts = RoomFacts(
            names=await self.store.state_contents(nids, [NAME, AVATAR]),
            counts=await self.store.member_counts(nids),
            unread={r: (u.main.notifications, u.main.highlights) for r, u in unread.items()},
        )
        out: dict[str, Any] = {}
        sent: dict[str, RoomSent] = {}
        for c in chosen:
            room_id = c.info.room_id
            built = await self.bodies.build(
                call.user_id,
                call.device_id,
                c,
                wanted[room_id],
                pos.rooms.get(room_id),
                now,
                latest.get(c.info.room_nid, 0),
                facts,
                room_id in read,
            )
            if built is not None:
                out[room_id], sent[room_id] = built
        return out, sent
