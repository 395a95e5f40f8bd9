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

Cost: ``build_many`` builds every room of a sync together, each step one
read for all the rooms (timelines, the history-visibility keys of every
state group, the state before each timeline, lazy members, serialization,
summaries), so a sync costs the same number of statements for 5 rooms as
for 30 (tests/integration/test_sync_statement_counts.py). What is still per
room is rare: a timeline filtered by type or sender (paged further back), a
limited incremental timeline (the state events in its gap), and a state
event in the timeline the user could not see.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.rooms import client_json
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.membership_store import Membership
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.visibility import Visibility
from homeserver.streams.tokens import StreamToken
from homeserver.sync.model import SyncContext
from homeserver.sync.store import SyncStore
from homeserver.sync.summary_cache import (
    HERO_CANDIDATES_CACHE,
    HEROES,
    MEMBER_COUNTS_CACHE,
    NAMING_CACHE,
    HeroCandidates,
    SummaryCache,
    heroes_for,
    names_room,
)
from homeserver.userdata.filtering import event_matches, matches_everything, project_fields

MEMBER = "m.room.member"
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
        # What each room's ``summary`` is made of, dropped when its rows change
        # (``summary_cache.py``): memberships, and the current state for the name.
        self.member_counts: SummaryCache[Mapping[str, int]] = SummaryCache(MEMBER_COUNTS_CACHE)
        self.hero_candidates: SummaryCache[HeroCandidates] = SummaryCache(HERO_CANDIDATES_CACHE)
        self.naming: SummaryCache[tuple[int, ...]] = SummaryCache(NAMING_CACHE)
        rooms.members.local_cache.followers += [self.member_counts, self.hero_candidates]
        rooms.state.current_cache.followers.append(self.naming)

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
        self, ctx: SyncContext, room: RoomInfo, upto: int, full: bool
    ) -> dict[str, Any]:
        return (await self.build_many(ctx, [room], upto, {room.room_nid} if full else set()))[
            room.room_nid
        ]

    async def build_many(
        self,
        ctx: SyncContext,
        rooms: list[RoomInfo],
        upto: int,
        full: set[int],
        newly_joined: frozenset[int] | set[int] = frozenset(),
        new_events: dict[int, list[StoredEvent]] | None = None,
    ) -> dict[int, dict[str, Any]]:
        """room nid -> its timeline, state and summary; ``full``: the rooms that get their
        full state. Each step reads all the rooms at once, so a sync of many rooms costs
        a constant number of statements (per step, one per chunk of 100-500 rooms).

        ``newly_joined``: rooms the user joined since the token. Their timelines are read
        from the room's history as for an initial sync (the events before the join that
        history visibility lets the user see), and are ``limited`` so the client knows to
        paginate (as Synapse answers, which clients expect).

        ``new_events``: each room's newest ``limit + 1`` events in ``(since, upto]``
        when the caller has read them (``SyncStore.user_memberships``; a room not in it
        has none), so they are not read again."""
        if not rooms:
            return {}
        rf = ctx.flt.room
        limit = ctx.limit
        since = ctx.since_events
        filtered = rf.timeline.types is not None or rf.timeline.senders is not None
        picked: dict[int, tuple[list[StoredEvent], bool]] = {}
        if filtered:
            for room in rooms:
                after = None if room.room_nid in newly_joined else since
                picked[room.room_nid] = await self._paged_timeline(ctx, room, upto, after)
        else:
            batches = await self._latest(rooms, newly_joined, since, upto, limit + 1, new_events)
            short: list[RoomInfo] = []
            pages = [(r, batches[r.room_nid][::-1]) for r in rooms]
            for room, visible in zip(rooms, await self._visible_many(ctx, pages), strict=True):
                batch = batches[room.room_nid]
                matching = self._matching(ctx, visible)
                reached_since = len(batch) < limit + 1
                picked[room.room_nid] = (matching, reached_since)
                if len(visible) < len(batch) and not reached_since and len(matching) <= limit:
                    short.append(room)
            if short:
                # History the user may not see left these pages short (messages from
                # while they were away): read further back, for all of them at once.
                more = await self._latest(short, newly_joined, since, upto, MAX_FETCH)
                pages = [(r, more[r.room_nid][::-1]) for r in short]
                for room, visible in zip(short, await self._visible_many(ctx, pages), strict=True):
                    reached_since = len(more[room.room_nid]) < MAX_FETCH
                    picked[room.room_nid] = (self._matching(ctx, visible), reached_since)
        timelines: dict[int, list[StoredEvent]] = {}
        limited: dict[int, bool] = {}
        starts: dict[int, int] = {}
        for room in rooms:
            matching, reached_since = picked[room.room_nid]
            timeline = matching[max(0, len(matching) - limit) :]
            timelines[room.room_nid] = timeline
            limited[room.room_nid] = len(matching) > limit or not reached_since
            first = timeline[0].stream_ordering if timeline else upto + 1
            assert first is not None
            starts[room.room_nid] = first
        if since is not None:
            # State a history purge took off the timeline is not in it: a gap to report.
            unlimited = {n: starts[n] for n, lim in limited.items() if not lim}
            for nid in await self.rooms.events.purged_state_rooms(since, unlimited):
                limited[nid] = True
        states = await self._states(ctx, rooms, since, starts, full, limited, timelines)
        if rf.state.lazy_load_members:
            states = await self._lazy_members_many(ctx, rooms, states, timelines, full, limited)
        if not matches_everything(rf.state):
            for nid, state in states.items():
                states[nid] = [s for s in state if event_matches(rf.state, s.event.pdu)]
        rendered = await self._render(ctx, rooms, timelines, states)
        summaries = await self._summaries(
            ctx,
            [
                r
                for r in rooms
                if r.room_nid in full
                or any(
                    s.event.type == MEMBER for s in (*timelines[r.room_nid], *states[r.room_nid])
                )
            ],
        )
        out: dict[int, dict[str, Any]] = {}
        for room in rooms:
            nid = room.room_nid
            events, state_events = rendered[nid]
            # prev_batch: before the timeline; but when the timeline was read from the
            # room's history and all of it fitted, the sync position (as Synapse gives it,
            # and Sytest expects /messages from it to repeat the timeline).
            from_history = since is None or nid in newly_joined
            prev_batch = upto if from_history and not limited[nid] else starts[nid] - 1
            body: dict[str, Any] = {
                "timeline": {
                    "events": events,
                    "limited": limited[nid] or nid in newly_joined,
                    "prev_batch": StreamToken(events=max(0, prev_batch)).encode(),
                },
                "state": {"events": state_events},
            }
            if nid in summaries:
                body["summary"] = summaries[nid]
            out[nid] = body
        return out

    async def _latest(
        self,
        rooms: list[RoomInfo],
        newly_joined: frozenset[int] | set[int],
        since: int | None,
        upto: int,
        limit: int,
        new_events: dict[int, list[StoredEvent]] | None = None,
    ) -> dict[int, list[StoredEvent]]:
        """Each room's newest ``limit`` events up to ``upto``: after the token, or from
        the room's history for the rooms joined since."""
        out: dict[int, list[StoredEvent]] = {}
        for after, group, given in (
            (since, [r for r in rooms if r.room_nid not in newly_joined], new_events),
            (None, [r for r in rooms if r.room_nid in newly_joined], None),
        ):
            if group and given is not None:
                # Read by the caller: the rooms' newest events after ``since`` (or, in
                # an initial sync, up to ``upto``: ``SyncStore.sync_heads_and_rooms``).
                out.update({r.room_nid: given.get(r.room_nid, []) for r in group})
            elif group and after is not None and upto <= after:
                # The events stream has not moved (a wake-up by typing or a receipt):
                # nothing can lie in (after, upto], so no statement.
                out.update({r.room_nid: [] for r in group})
            elif group:
                out.update(
                    await self.rooms.events.latest_in_rooms(
                        [r.room_nid for r in group], after=after, before=upto, limit=limit
                    )
                )
        for nid in newly_joined:
            if nid in out:
                # An invite received before this server was in the room is an outlier:
                # no state is known at it, so a timeline may not start there.
                out[nid] = [s for s in out[nid] if not s.outlier]
        return out

    @staticmethod
    def _matching(ctx: SyncContext, visible: list[StoredEvent]) -> list[StoredEvent]:
        """The visible events the timeline filter keeps (not from ignored senders)."""
        rf = ctx.flt.room
        return [
            s
            for s in visible
            if event_matches(rf.timeline, s.event.pdu)
            and (s.event.state_key is not None or s.event.sender not in ctx.ignored)
        ]

    async def _paged_timeline(
        self, ctx: SyncContext, room: RoomInfo, upto: int, after: int | None
    ) -> tuple[list[StoredEvent], bool]:
        """With a type or sender filter, or history the user may not see, a page may be
        short: read further back, page by page, until the limit is reached, the range
        (after ``after``) is exhausted or MAX_FETCH events were read."""
        rf = ctx.flt.room
        limit = ctx.limit
        window = min(MAX_FETCH, (limit + 1) * 4)
        matching: list[StoredEvent] = []
        before: int | None = upto
        fetched = 0
        while True:
            batch = await self.rooms.events.room_stream(
                room.room_nid, after=after, before=before, limit=window, backwards=True
            )
            fetched += len(batch)
            reached_since = len(batch) < window
            (visible,) = await self._visible_many(ctx, [(room, batch[::-1])])
            matching = [
                s
                for s in visible
                if event_matches(rf.timeline, s.event.pdu)
                and (s.event.state_key is not None or s.event.sender not in ctx.ignored)
            ] + matching
            if reached_since or len(matching) > limit or fetched >= MAX_FETCH:
                return matching, reached_since
            oldest = batch[-1].stream_ordering
            assert oldest is not None
            before = oldest - 1

    async def _render(
        self,
        ctx: SyncContext,
        rooms: list[RoomInfo],
        timelines: dict[int, list[StoredEvent]],
        states: dict[int, list[StoredEvent]],
    ) -> dict[int, tuple[list[dict[str, Any]], Any]]:
        """Serialize every room's timeline and state in two calls (their look-ups are
        batched over the whole list), then split them per room again."""
        fields = ctx.flt.event_fields
        all_timeline = [s for r in rooms for s in timelines[r.room_nid]]
        all_state = [s for r in rooms for s in states[r.room_nid]]
        if ctx.flt.event_format == "federation":
            # The events as servers exchange them (spec: Filter ``event_format``).
            events = [_federation_format(s) for s in all_timeline]
            state_events = [_federation_format(s) for s in all_state]
        else:
            events = await self.serializer.serialize(
                all_timeline,
                with_room_id=False,
                user_id=ctx.user_id,
                device_id=ctx.req.device_id,
                childless=ctx.childless,
            )
            if ctx.req.encoded_state and fields is None:
                # Straight to the wire, whole: each state event's JSON encoded once
                # (a big room's initial sync: thousands of member events per request),
                # and each room's state one array (``client_json.array``).
                parts = await self.serializer.client_parts(all_state, with_room_id=False)
                split = self._split(rooms, timelines, states, events, parts, fields)
                return {
                    nid: (timeline, client_json.array(state) if state else [])
                    for nid, (timeline, state) in split.items()
                }
            state_events = await self.serializer.serialize(all_state, with_room_id=False)
        return self._split(
            rooms,
            timelines,
            states,
            events,
            [project_fields(e, fields) for e in state_events],
            fields,
        )

    @staticmethod
    def _split(
        rooms: list[RoomInfo],
        timelines: dict[int, list[StoredEvent]],
        states: dict[int, list[StoredEvent]],
        events: list[dict[str, Any]],
        state_events: list[Any],
        fields: Sequence[str] | None,
    ) -> dict[int, tuple[list[dict[str, Any]], list[Any]]]:
        """The serialized timelines (projected to ``fields``) and states, per room."""
        out: dict[int, tuple[list[dict[str, Any]], list[Any]]] = {}
        t_at = s_at = 0
        for room in rooms:
            t_n, s_n = len(timelines[room.room_nid]), len(states[room.room_nid])
            out[room.room_nid] = (
                [project_fields(e, fields) for e in events[t_at : t_at + t_n]],
                state_events[s_at : s_at + s_n],
            )
            t_at += t_n
            s_at += s_n
        return out

    async def _visible_many(
        self, ctx: SyncContext, pages: list[tuple[RoomInfo, list[StoredEvent]]]
    ) -> list[list[StoredEvent]]:
        """History visibility, except that events still in the room's current state are
        shown to a member (as Synapse does: state set while they could not see the room,
        such as a join while they were away, is current state they may read anyway)."""
        own: dict[int, Membership | None] = dict(ctx.own_memberships)
        for room, _ in pages:
            if room.room_nid not in own:
                own[room.room_nid] = await self.rooms.members.get(room.room_nid, ctx.user_id)
        results = await self.visibility.filter_rooms(ctx.user_id, pages, own)
        out = []
        for (room, events), visible in zip(pages, results, strict=True):
            member = own[room.room_nid]
            if member is None or member.membership != "join":
                out.append(visible)
                continue
            shown = {s.event_nid for s in visible}
            for s in events:
                if s.event_nid in shown or not s.event.is_state():
                    continue
                etype, key = s.event.state_tuple()
                current = await self.rooms.current_state_event(room, etype, key)
                if current is not None and current.event_nid == s.event_nid:
                    shown.add(s.event_nid)
            out.append([s for s in events if s.event_nid in shown])
        return out

    async def _states(
        self,
        ctx: SyncContext,
        rooms: list[RoomInfo],
        since: int | None,
        starts: dict[int, int],
        full: set[int],
        limited: dict[int, bool],
        timelines: dict[int, list[StoredEvent]],
    ) -> dict[int, list[StoredEvent]]:
        """Per room: the full state before the timeline (``full``), or for a limited
        incremental timeline the state events in the gap (latest per key)."""
        out: dict[int, list[StoredEvent]] = {r.room_nid: [] for r in rooms}
        firsts = {
            r.room_nid: timelines[r.room_nid][0]
            for r in rooms
            if r.room_nid in full
            and timelines[r.room_nid]
            and timelines[r.room_nid][0].state_group is not None
        }
        members: dict[int, set[str]] | None = None
        if ctx.flt.room.state.lazy_load_members:
            # Lazy-loaded members: of the m.room.member entries only the timeline
            # senders' and the user's own are kept (``_lazy_members_many``), so only
            # those are loaded: a 2,000-member room's other members are never read.
            members = {}
            for nid, s in firsts.items():
                assert s.state_group is not None
                senders = {t.event.sender for t in timelines[nid]} | {ctx.user_id}
                members.setdefault(s.state_group, set()).update(senders)
        groups = await self.rooms.state_at_many(
            (s.state_group for s in firsts.values()), members=members
        )
        replaced = await self.rooms.events.by_nids(
            s.prev_state_event_nid
            for s in firsts.values()
            if s.event.is_state() and s.prev_state_event_nid is not None
        )
        for nid, first in firsts.items():
            out[nid] = _state_before(first, groups.get(first.state_group or 0, {}), replaced)
        for room in rooms:
            nid = room.room_nid
            if nid in firsts:
                continue
            if nid in full:
                before = await self.rooms.events.last_event_before(nid, starts[nid])
                if before is not None:
                    out[nid] = list((await self.rooms.state_at(before.state_group)).values())
            elif limited[nid] and since is not None:
                latest: dict[tuple[str, str], StoredEvent] = {}
                for s in await self.rooms.events.state_events_between(nid, since, starts[nid]):
                    latest[s.event.state_tuple()] = s
                out[nid] = list(latest.values())
        return out

    async def _lazy_members_many(
        self,
        ctx: SyncContext,
        rooms: list[RoomInfo],
        states: dict[int, list[StoredEvent]],
        timelines: dict[int, list[StoredEvent]],
        full: set[int],
        limited: dict[int, bool],
    ) -> dict[int, list[StoredEvent]]:
        """Keep only the timeline senders' (and the user's own) membership events; the
        senders' memberships missing from the state are read for all rooms at once.

        A limited incremental sync keeps every membership change of the gap (who joined
        or left while the client was away, senders or not) and always sends them; only
        the senders' memberships added for the timeline are left out when this device
        already has them (Synapse turns lazy loading off for gaps; Sytest
        31sync/15lazy-members expects it)."""
        out: dict[int, list[StoredEvent]] = {}
        missing: dict[int, list[str]] = {}
        changed: dict[int, set[str]] = {}
        for room in rooms:
            nid = room.room_nid
            timeline = timelines[nid]
            senders = {s.event.sender for s in timeline}
            if nid not in full and limited.get(nid, False):
                kept = list(states[nid])
                changed[nid] = {s.event.event_id for s in kept if s.event.type == MEMBER}
            else:
                keep = senders | {ctx.user_id} if nid in full else senders
                kept = [
                    s for s in states[nid] if s.event.type != MEMBER or s.event.state_key in keep
                ]
            have = {s.event.state_key for s in (*kept, *timeline) if s.event.type == MEMBER}
            out[nid] = kept
            if senders - have:
                missing[nid] = sorted(senders - have)
        # The state after the first timeline event holds, for every other member, their
        # membership before the timeline; the first event's own member is in ``have``.
        groups = {nid: timelines[nid][0].state_group for nid in missing}
        wanted = {(MEMBER, u) for users in missing.values() for u in users}
        found = await self.rooms.state_at_many(groups.values(), wanted) if wanted else {}
        for nid, users in missing.items():
            group = groups[nid]
            at = found.get(group, {}) if group is not None else {}
            out[nid].extend(at[(MEMBER, u)] for u in users if (MEMBER, u) in at)
        for room in rooms:
            nid = room.room_nid
            sent = self._sent_for(ctx, room.room_id, reset=nid in full)
            if nid not in full and not ctx.flt.room.state.include_redundant_members:
                gap = changed.get(nid, set())
                out[nid] = [
                    s
                    for s in out[nid]
                    if s.event.type != MEMBER
                    or s.event.event_id in gap
                    or sent.get(s.event.state_key or "") != s.event.event_id
                ]
            for s in (*out[nid], *timelines[nid]):
                if s.event.type == MEMBER and s.event.state_key is not None:
                    sent[s.event.state_key] = s.event.event_id
        return out

    async def _read_candidates(self, nids: list[int]) -> dict[int, HeroCandidates]:
        found = await self.store.hero_candidates_many(nids, HEROES + 1)
        return {n: HeroCandidates(tuple(p), tuple(g)) for n, (p, g) in found.items()}

    async def _summaries(
        self, ctx: SyncContext, rooms: list[RoomInfo]
    ) -> dict[int, dict[str, Any]]:
        """room nid -> ``summary``, for all the rooms at once."""
        if not rooms:
            return {}
        nids = [r.room_nid for r in rooms]
        counts = await self.member_counts.many(nids, self.store.member_counts_many, {})
        naming = await self.naming.many(nids, self.store.naming_events_many, ())
        found = await self.rooms.events.by_nids({e for nids in naming.values() for e in nids})
        unnamed = [
            n for n in nids if not any(e in found and names_room(found[e]) for e in naming[n])
        ]
        candidates = await self.hero_candidates.many(unnamed, self._read_candidates, _NO_HEROES)
        heroes = {n: heroes_for(c, ctx.user_id) for n, c in candidates.items()}
        out: dict[int, dict[str, Any]] = {}
        for nid in nids:
            summary: dict[str, Any] = {
                "m.joined_member_count": counts[nid].get("join", 0),
                "m.invited_member_count": counts[nid].get("invite", 0),
            }
            # Heroes are for naming a room that has no name (spec: required only when
            # m.room.name and m.room.canonical_alias are unset or empty); a named room
            # has none, as Synapse answers.
            if nid in heroes:
                summary["m.heroes"] = heroes[nid]
            out[nid] = summary
        return out


_NO_HEROES = HeroCandidates((), ())


def _state_before(
    first: StoredEvent,
    state: dict[tuple[str, str], StoredEvent],
    replaced: dict[int, StoredEvent],
) -> list[StoredEvent]:
    """The state just before ``first``: its own state group, with its own entry put back
    to what it replaced. (The stream before ``first`` may hold no state at all: in a room
    joined over federation the only earlier event here is the invite, an outlier.)"""
    if first.event.is_state():
        key = first.event.state_tuple()
        own = state.get(key)
        if own is not None and own.event_nid == first.event_nid:
            state = dict(state)
            del state[key]
            prev = first.prev_state_event_nid
            if prev is not None and prev in replaced:
                state[key] = replaced[prev]
    return list(state.values())


def _federation_format(s: StoredEvent) -> dict[str, Any]:
    """The PDU, with its ``event_id`` (which room versions 3+ leave implicit)."""
    return {**s.event.pdu, "event_id": s.event.event_id}
