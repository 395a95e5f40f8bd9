"""GET /sync: what changed for a user since a token.

Design note
-----------
One build reads every stream's position once (``ctx.now``) and each section
reads its stream between the client's token (``ctx.since``) and that
position, so ``next_batch`` names exactly what was answered and a token is
valid across restarts (only typing, kept in memory, has an epoch).

Rooms: an incremental sync touches only rooms with something new: a
membership change, timeline events, typing, receipts or room account
data in range. Full state is loaded only for an initial sync,
``full_state=true`` or a room joined since the token. Sections live in
their own modules: ``room_timeline`` (timeline, state, lazy members,
summary), ``room_extras`` (ephemeral, unread counts), ``user_sections``
(account data, presence, to-device, device lists, key counts).

Long-poll: the request registers with the notifier *before* reading the
positions, so a change committed meanwhile wakes it (see notifier.py).
Every stream's writer notifies the users it concerns (wired in
``sync/wiring.py``); nothing polls.
"""

from __future__ import annotations

import time
from typing import Any

from homeserver.rooms.serialize import STRIPPED_STATE_KEYS, EventSerializer, stripped_state
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.membership_store import Membership
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.visibility import Visibility
from homeserver.streams.tokens import StreamToken
from homeserver.sync.ignored import IgnoredUsers
from homeserver.sync.model import SyncContext, SyncRequest, SyncSources, timeline_limit
from homeserver.sync.notifier import Notifier
from homeserver.sync.peeks import Peek
from homeserver.sync.room_extras import RoomExtras
from homeserver.sync.room_timeline import RoomTimeline
from homeserver.sync.shared import SharedBuilds
from homeserver.sync.store import RoomsNewest, StreamHeads, SyncStore, UserMemberships
from homeserver.sync.user_sections import UserSections
from homeserver.userdata.filtering import Filter, room_allowed

__all__ = ["SyncBuilder", "SyncRequest"]

GUEST_ACCESS = "m.room.guest_access"
# Memberships that end the user's presence in a room (the ``leave`` section).
_GONE = ("leave", "ban")
# How far back through the user's membership events to look for their state at a token.
MAX_MEMBERSHIP_HOPS = 8


class SyncBuilder:
    def __init__(
        self,
        rooms: RoomService,
        visibility: Visibility,
        serializer: EventSerializer,
        notifier: Notifier,
        store: SyncStore,
        sources: SyncSources,
    ) -> None:
        self.rooms = rooms
        self.notifier = notifier
        self.store = store
        self.src = sources
        self.timeline = RoomTimeline(rooms, visibility, serializer, store)
        self._extras = RoomExtras(sources)
        self._user = UserSections(sources, rooms.members)
        self._ignored_users = IgnoredUsers(sources.account_data)
        self._shared = SharedBuilds(self._sync)

    async def sync(self, req: SyncRequest) -> dict[str, Any]:
        """The answer to ``req``; identical requests in flight share one build
        (sync/shared.py)."""
        return await self._shared.run(req)

    async def _sync(self, req: SyncRequest) -> dict[str, Any]:
        flt = await self.src.filters.load(req.user_nid, req.filter_param)
        with self.notifier.listen(req.user_id) as listener:
            # One statement in the usual case: the heads, whether the device peeks and
            # the user's presence (read after listening: a change committed from here
            # on wakes the request). An incremental sync that will not wait builds
            # at once: its memberships and new events come in the same statement.
            read: UserMemberships | None = None
            rooms: list[Membership] | None = None
            newest: RoomsNewest | None = None
            if req.since is not None and req.timeout_ms <= 0 and not req.full_state:
                await self._settle()
                heads, read = await self.store.sync_heads_and_memberships(
                    req.user_id, req.device_id, req.user_nid, req.since.events, _limit(flt)
                )
            elif req.since is None:
                # An initial sync: the user's rooms in the same statement, and their
                # timelines' events (when every joined room's newest are what it shows)
                # and unread counts.
                heads, rooms, newest = await self.store.sync_heads_and_rooms(
                    req.user_id,
                    req.device_id,
                    req.user_nid,
                    _initial_limit(flt),
                    counts=not flt.room.timeline.unread_thread_notifications,
                )
            else:
                heads = await self._heads(req)
            if await self._user.set_presence(SyncContext(req), heads.own_presence):
                heads = await self._heads(req)  # the user's own presence is in this answer
                read = rooms = newest = None  # read again up to these heads
            device_peeks: list[Peek] = []
            if heads.peeking:
                device_peeks = await self._device_peeks(req)
                self.notifier.also(listener, await self._peeked_room_ids(device_peeks))
                heads = await self._heads(req)  # read again, now listening on those rooms
                read = rooms = newest = None
            first = SyncContext(
                req,
                flt,
                req.since,
                device_peeks=device_peeks,
                memberships_read=read,
                rooms_read=rooms,
                new_event_rows=newest.events if newest is not None else [],
                initial_events_read=newest is not None,
                initial_counts=newest.counts if newest is not None else None,
            )
            result: dict[str, Any] | None = None
            if not _nothing_to_build(req, heads, self.src.typing.current_token(), device_peeks):
                result = await self._build(first, heads)
                if req.since is None or req.full_state or req.timeout_ms <= 0:
                    return result
            # else: a long-poll at the head of every stream (the usual case: the client
            # sends the token it was just given) would build an empty answer; it waits
            # first and builds once, when woken or at its timeout.
            deadline = time.monotonic() + req.timeout_ms / 1000
            while result is None or _is_empty(result):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if not await listener.wait(remaining):
                    break
                await self._settle()
                result = await self._build(SyncContext(req, flt, req.since))
            if result is None:
                result = await self._build(first)
            return result

    async def _settle(self) -> None:
        """Before an incremental or woken sync reads: let push evaluation commit the
        events already persisted here (``PushEvaluator.settle``). The counts wait for
        it in any case; reading after it, the read does not run beside that commit on
        SQLite's writer and the disk, and the counts then do not wait again."""
        settle = self.src.notifications.settle
        if settle is not None:
            await settle()

    async def _heads(self, req: SyncRequest) -> StreamHeads:
        return await self.store.sync_heads(req.user_id, req.device_id, req.user_nid)

    async def positions(self) -> StreamToken:
        return _token(await self.store.stream_heads(), self.src.typing.current_token())

    async def _build(self, ctx: SyncContext, heads: StreamHeads | None = None) -> dict[str, Any]:
        req = ctx.req
        if heads is None and ctx.since is not None and not req.full_state:
            # A woken long-poll: the heads and the memberships up to them (with the new
            # events), one statement.
            heads, ctx.memberships_read = await self.store.sync_heads_and_memberships(
                req.user_id, req.device_id, req.user_nid, ctx.since.events, _limit(ctx.flt)
            )
            if not heads.peeking:
                ctx.device_peeks = []
        elif heads is None:
            heads = await self._heads(ctx.req)  # one statement for all of them
            if not heads.peeking:
                ctx.device_peeks = []  # the device peeks into no room: nothing to read
        ctx.now = _token(heads, self.src.typing.current_token())
        ctx.to_device_head = heads.to_device
        ctx.key_counts = heads.key_counts
        ctx.completed_head = heads.completed
        return await self._build_at(ctx)

    async def memberships(self, ctx: SyncContext, with_events: bool = False) -> None:
        """Fill ``ctx.joined`` and ``ctx.changed`` (memberships to report); with
        ``with_events``, an incremental sync's rooms' new events too (``_new_events``),
        read in the same statement."""
        members = self.rooms.members
        now = ctx.now.events
        moves: list[Membership] | None = None
        current: list[Membership] = []
        if ctx.since is None:
            # The joined rooms and the invites and knocks to report: one read (or none,
            # when they came with the heads).
            read_rooms = ctx.rooms_read
            if read_rooms is None:
                read_rooms = await members.rooms_for_user(ctx.user_id, ("join", "invite", "knock"))
            current = read_rooms
            mine = [m for m in current if m.membership == "join"]
        else:
            read = ctx.memberships_read or await self.store.user_memberships(
                ctx.user_id, ctx.since.events, now, ctx.limit + 1 if with_events else 0
            )
            mine, moves = read.joined, read.moves
            ctx.new_event_rows = read.new_events
        joined = [m for m in mine if m.stream_ordering <= now]
        if ctx.since is None:
            changed = [m for m in current if m.stream_ordering <= now]
            if ctx.flt.room.include_leave:
                changed += await self.store.left_rooms(ctx.user_id, now)
        else:
            since = ctx.since.events
            changed = [
                m
                for m in read.changed
                if not (m.membership == "join" and await self._joined_at(m, since))
            ]
        infos = await self.rooms.rooms.rooms_by_nid(
            {m.room_nid for m in joined} | {m.room_nid for m in changed}
        )
        rf = ctx.flt.room
        if rf.rooms is None and not rf.not_rooms:
            allowed = set(infos)  # the usual filter: no room list to check each room against
        else:
            allowed = {n for n, i in infos.items() if room_allowed(rf, i.room_id)}
        if ctx.req.is_guest:
            # An invite is the guest's own news: shown whatever the room's guest
            # access (of a remote room we hold none); joining is decided on join.
            invited = {m.room_nid for m in changed if m.membership == "invite"}
            allowed = {n for n in allowed if n in invited or await self._guest_may_see(infos[n])}
        ctx.joined = {m.room_nid: infos[m.room_nid] for m in joined if m.room_nid in allowed}
        ctx.own_memberships = {m.room_nid: m for m in joined}
        ctx.changed = [m for m in changed if m.room_nid in allowed]
        if ctx.since is not None:
            ctx.left_nids = {m.room_nid for m in ctx.changed if m.membership in ("leave", "ban")}
        if moves is not None:
            # ``UserSections.member_moves``: the moves in the rooms answered for.
            ctx.member_moves = [
                m for m in moves if m.room_nid in ctx.joined or m.room_nid in ctx.left_nids
            ]
        ctx.infos = infos

    async def _new_events(self, ctx: SyncContext) -> dict[int, list[StoredEvent]]:
        """room nid -> its newest ``limit + 1`` events in the range, newest first, for
        the joined rooms answered for that have any (read with the memberships: a room
        not in it has none). The ids of those that no relation points at go to
        ``ctx.childless``: their bundled aggregations are not looked up. (A relation
        committed after that read has a position past ``ctx.now``: the client gets it
        as a timeline event of a later sync.)"""
        rows = [e for e in ctx.new_event_rows if e.room_nid in ctx.joined]
        found = await self.rooms.events.by_nids(e.event_nid for e in rows)
        out: dict[int, list[StoredEvent]] = {}
        for e in rows:
            room = out.setdefault(e.room_nid, [])
            stored = found.get(e.event_nid)
            if stored is not None:
                room.append(stored)
            if not e.has_children:
                ctx.childless.add(e.event_id)
        return out

    async def _partial_state(self, ctx: SyncContext) -> None:
        """A client that does not lazy-load members takes a room's members from the
        sync's state: a partial-state room (members omitted, merged later in place) is
        left out until its state is whole, and then sent as newly joined, with its
        whole state (``ctx.completed``). Lazy-loading clients see it at once: they read
        the members they need with the events, and ``/members`` waits.

        A leave (or kick, ban) made while the room was partial is left out too: such a
        client never had the room, so a ``leave`` section would name a room it was never
        shown (and its members as device-list news)."""
        partial_state = self.src.partial_state
        if partial_state is None or ctx.flt.room.state.lazy_load_members:
            return
        leaves = {m.room_nid: m.stream_ordering for m in ctx.changed if m.membership in _GONE}
        if not ctx.joined and not leaves:
            return
        partial = await partial_state.partial_among(list(ctx.joined)) if ctx.joined else set()
        if leaves:
            gone = await partial_state.partial_at(leaves)
            partial |= {
                m.room_nid for m in ctx.changed if m.room_nid in gone and await self._left_join(m)
            }
        if partial:
            ctx.joined = {n: i for n, i in ctx.joined.items() if n not in partial}
            ctx.changed = [m for m in ctx.changed if m.room_nid not in partial]
            ctx.left_nids -= partial
            if ctx.member_moves is not None:
                ctx.member_moves = [m for m in ctx.member_moves if m.room_nid not in partial]
        if ctx.since is not None and (
            ctx.completed_head is None or ctx.completed_head > ctx.since.events
        ):
            done = await partial_state.completed_between(ctx.since.events, ctx.now.events)
            ctx.completed = {n for n in done if n in ctx.joined}

    async def _load_ignored(self, ctx: SyncContext) -> None:
        if not ctx.ignored_read:
            ctx.ignored = await self._ignored(ctx)
            ctx.ignored_read = True

    async def _ignored(self, ctx: SyncContext) -> frozenset[str]:
        """The user's ignored users (spec: "Ignoring Users")."""
        return await self._ignored_users.get(ctx.req.user_nid, ctx.user_id, ctx.now.account_data)

    async def _joined_at(self, m: Membership, since: int) -> bool:
        """Was the user already joined at ``since``? (A join that replaced a join is a
        profile change, not a newly joined room: no full state for it.)"""
        nid: int | None = m.event_nid
        for _ in range(MAX_MEMBERSHIP_HOPS):
            if nid is None:
                return False
            found = (await self.rooms.events.by_nids([nid])).get(nid)
            if found is None:
                return False
            so = found.stream_ordering
            if so is not None and so <= since:
                return found.event.membership == "join"
            nid = found.prev_state_event_nid
        return False

    async def _left_join(self, m: Membership) -> bool:
        """Does the leave (or ban) ``m`` end a join? (Not a rejected invite, a withdrawn
        knock: the client had those, in ``invite`` and ``knock``.)"""
        found = (await self.rooms.events.by_nids([m.event_nid])).get(m.event_nid)
        prev = None if found is None else found.prev_state_event_nid
        if prev is None:
            return False
        before = (await self.rooms.events.by_nids([prev])).get(prev)
        return before is not None and before.event.membership == "join"

    async def _joined_since(self, m: Membership, since: int) -> bool:
        """Did the user join after ``since`` (and before ``m``, say a leave)?"""
        nid: int | None = m.event_nid
        for _ in range(MAX_MEMBERSHIP_HOPS):
            if nid is None:
                return False
            found = (await self.rooms.events.by_nids([nid])).get(nid)
            if found is None or found.stream_ordering is None or found.stream_ordering <= since:
                return False
            if found.event.membership == "join":
                return True
            nid = found.prev_state_event_nid
        return False

    async def _guest_may_see(self, room: RoomInfo) -> bool:
        """Guests see only rooms that allow guests (spec: "Guest Access")."""
        ev = await self.rooms.current_state_event(room, GUEST_ACCESS)
        return ev is not None and ev.event.content.get("guest_access") == "can_join"

    async def _build_at(self, ctx: SyncContext) -> dict[str, Any]:
        if ctx.since is None or ctx.req.full_state or ctx.since.events < ctx.now.events:
            # Ignored users hide events and invites: with no new event (a wake-up by
            # typing or a receipt) there is nothing to hide, so the read is skipped
            # (a new peek reads it for its history: ``_peeks``).
            await self._load_ignored(ctx)
        await self.memberships(ctx, with_events=not ctx.req.full_state)
        await self._partial_state(ctx)
        user = self._user
        if ctx.req.to_device:
            to_device, td_pos = await user.to_device(ctx)
        else:
            to_device, td_pos = [], ctx.since.to_device if ctx.since is not None else 0
        account_data, room_data = await user.account_data(ctx)
        joined_ids = {info.room_id: nid for nid, info in ctx.joined.items()}
        ephemeral = await self._extras.ephemeral(ctx, list(joined_ids))
        by_room = {m.room_nid: m for m in ctx.changed}
        new_events = None
        if ctx.since is None or ctx.req.full_state:
            # full_state: every joined room, changed or not (spec: "full_state").
            active = set(ctx.joined)
            if ctx.initial_events_read:
                new_events = await self._new_events(ctx)  # read with the rooms
        else:
            # Which rooms have new events, and their newest events (the timelines of
            # the rooms not newly joined): read with the memberships.
            new_events = await self._new_events(ctx)
            active = set(new_events)
            active |= {n for n, m in by_room.items() if m.membership == "join" and n in ctx.joined}
            active |= ctx.completed
            extra = set(ephemeral) | set(room_data)
            active |= {joined_ids[r] for r in extra if r in joined_ids}
        out: dict[str, dict[str, Any]] = {"join": {}, "invite": {}, "leave": {}, "knock": {}}
        joined_rooms = [ctx.joined[n] for n in sorted(active)]
        unread = await self._extras.unread(ctx, joined_rooms)
        newly_joined = {
            room.room_nid
            for room in joined_rooms
            if ctx.since is None
            or room.room_nid in ctx.completed
            or (
                by_room.get(room.room_nid) is not None
                and by_room[room.room_nid].membership == "join"
            )
        }
        bodies = await self.timeline.build_many(
            ctx,
            joined_rooms,
            ctx.now.events,
            {r.room_nid for r in joined_rooms} if ctx.req.full_state else newly_joined,
            newly_joined if ctx.since is not None else frozenset(),
            new_events,
        )
        for room in joined_rooms:
            newly = room.room_nid in newly_joined
            body = bodies[room.room_nid]
            body["ephemeral"] = {"events": ephemeral.get(room.room_id, [])}
            body["account_data"] = {"events": room_data.get(room.room_id, [])}
            if not newly and not ctx.req.full_state and _nothing_new(body):
                continue  # its new events were all hidden (ignored senders, visibility)
            body.update(unread.get(room.room_id, {}))
            out["join"][room.room_id] = body
        for m in ctx.changed:
            await self._other_room(ctx, m, out, room_data)
        peeks = await self._peeks(ctx)
        if peeks:
            out["peek"] = peeks
        next_token = StreamToken(
            events=ctx.now.events,
            to_device=td_pos,
            device_lists=ctx.now.device_lists,
            account_data=ctx.now.account_data,
            receipts=ctx.now.receipts,
            presence=ctx.now.presence,
            typing=ctx.now.typing,
        )
        return {
            "next_batch": next_token.encode(),
            "rooms": out,
            "presence": {"events": await user.presence(ctx)},
            "account_data": {"events": account_data},
            "to_device": {"events": to_device},
            "device_lists": await user.device_lists(ctx),
            **(await user.key_counts(ctx)),
        }

    async def _device_peeks(self, req: SyncRequest) -> list[Peek]:
        if self.src.peeks is None or not req.device_id:
            return []
        return await self.src.peeks.for_device(req.user_id, req.device_id)

    async def _peeked_room_ids(self, peeks: list[Peek]) -> list[str]:
        """The room ids a long-poll also waits on: the rooms this device peeks into."""
        if not peeks:
            return []
        infos = await self.rooms.rooms.rooms_by_nid(p.room_nid for p in peeks)
        return [info.room_id for info in infos.values()]

    async def _peeks(self, ctx: SyncContext) -> dict[str, dict[str, Any]]:
        """``rooms.peek`` (MSC2753): the rooms this device peeks into and has not joined,
        built as joined rooms are; a room whose peek began after the token (or every
        room, in an initial sync) gets its history as a newly joined room does."""
        peeks = [
            p
            for p in (
                ctx.device_peeks
                if ctx.device_peeks is not None
                else await self._device_peeks(ctx.req)
            )
            if p.room_nid not in ctx.joined and p.room_nid not in ctx.own_memberships
        ]
        if not peeks:
            return {}
        await self._load_ignored(ctx)
        infos = await self.rooms.rooms.rooms_by_nid(p.room_nid for p in peeks)
        rf = ctx.flt.room
        rooms = {n: i for n, i in infos.items() if room_allowed(rf, i.room_id)}
        since = ctx.since.events if ctx.since is not None else None
        new = {p.room_nid for p in peeks if p.room_nid in rooms and p.is_new(since)}
        active = set(new)
        if since is not None and ctx.since is not None:
            old = [n for n in rooms if n not in new]
            if old:
                active |= await self.rooms.events.rooms_with_events(old, since, ctx.now.events)
        peeked = [rooms[n] for n in sorted(active)]
        bodies = await self.timeline.build_many(
            ctx, peeked, ctx.now.events, new, new if since is not None else frozenset()
        )
        out: dict[str, dict[str, Any]] = {}
        for room in peeked:
            body = bodies[room.room_nid]
            body["ephemeral"] = {"events": []}
            body["account_data"] = {"events": []}
            if room.room_nid not in new and _nothing_new(body):
                continue
            out[room.room_id] = body
        undelivered = [p.room_nid for p in peeks if p.room_nid in new and p.delivered_at is None]
        if undelivered and self.src.peeks is not None:
            await self.src.peeks.delivered(
                ctx.user_id, ctx.req.device_id, undelivered, ctx.now.events
            )
        return out

    async def _other_room(
        self,
        ctx: SyncContext,
        m: Membership,
        out: dict[str, dict[str, Any]],
        room_data: dict[str, list[dict[str, Any]]],
    ) -> None:
        room = ctx.infos.get(m.room_nid)
        if room is None or m.membership == "join":
            return
        if m.membership in ("invite", "knock"):
            if m.membership == "invite" and ctx.ignored:
                own = await self.rooms.events.by_nids([m.event_nid])
                if any(s.event.sender in ctx.ignored for s in own.values()):
                    return  # an invite from an ignored user is not shown (spec)
            key = "invite_state" if m.membership == "invite" else "knock_state"
            out[m.membership][room.room_id] = {key: {"events": await self.stripped(room, m)}}
        elif ctx.since is not None or ctx.flt.room.include_leave:
            full = ctx.req.full_state or ctx.since is None
            if not full and ctx.since is not None:
                # Joined and left within this batch: the client never had the room's
                # state, so it gets all of it (as for a newly joined room).
                full = await self._joined_since(m, ctx.since.events)
            body = await self.timeline.build(ctx, room, m.stream_ordering, full=full)
            body["account_data"] = {"events": room_data.get(room.room_id, [])}
            out["leave"][room.room_id] = body

    async def stripped(self, room: RoomInfo, m: Membership) -> list[dict[str, Any]]:
        own = await self.rooms.events.by_nids([m.event_nid])
        keys = list(STRIPPED_STATE_KEYS)
        # The inviter's own membership too (as for application services, and Synapse),
        # so a client can show who invited: also when that was a third-party invite.
        keys += [("m.room.member", s.event.sender) for s in own.values() if s.event.sender]
        state = await self.rooms.current_state(room, keys)
        ids = {s.event.event_id for s in state.values()}
        events = list(state.values()) + [s for s in own.values() if s.event.event_id not in ids]
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


def _nothing_new(body: dict[str, Any]) -> bool:
    timeline = body["timeline"]
    return not (
        timeline["events"]
        or timeline["limited"]
        or body["state"]["events"]
        or body["ephemeral"]["events"]
        or body["account_data"]["events"]
    )


def _nothing_to_build(req: SyncRequest, heads: StreamHeads, typing: str, peeks: list[Peek]) -> bool:
    """Whether an incremental long-poll's token is at the head of every stream, so
    that a build now would answer nothing (every section reads its stream after the
    token; a peek not yet delivered is the one thing that does not move a stream)."""
    since = req.since
    return (
        since is not None
        and not req.full_state
        and req.timeout_ms > 0
        and since.typing == typing
        and since.events >= heads.events
        and since.to_device >= heads.to_device
        and since.device_lists >= heads.device_lists
        and since.account_data >= heads.account_data
        and since.receipts >= heads.receipts
        and since.presence >= heads.presence
        and all(p.delivered_at is not None for p in peeks)
    )


def _is_empty(result: dict[str, Any]) -> bool:
    return not (
        any(result["rooms"].values())
        or result["presence"]["events"]
        or result["account_data"]["events"]
        or result["to_device"]["events"]
        or result["device_lists"]["changed"]
        or result["device_lists"]["left"]
    )


def _limit(flt: Filter) -> int:
    """How many of each room's newest events an incremental sync reads with its
    memberships: one more than the timeline limit (to tell whether it is limited)."""
    return timeline_limit(flt) + 1


def _initial_limit(flt: Filter) -> int:
    """How many of each joined room's newest events an initial sync reads with its rooms
    (``_limit``), or 0: not with them, when the filter picks rooms or the timeline's
    events by type or sender (the timeline is then read room by room, further back)."""
    rf = flt.room
    if rf.rooms is not None or rf.not_rooms:
        return 0
    if rf.timeline.types is not None or rf.timeline.senders is not None:
        return 0
    return _limit(flt)


def _token(heads: StreamHeads, typing: str) -> StreamToken:
    """The positions a sync reads up to (to-device's is per device: not here)."""
    return StreamToken(
        events=heads.events,
        device_lists=heads.device_lists,
        account_data=heads.account_data,
        receipts=heads.receipts,
        presence=heads.presence,
        typing=typing,
    )
