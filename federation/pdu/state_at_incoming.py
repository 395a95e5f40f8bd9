"""Step 5's input: the state of the room before an incoming event.

Design note
-----------
The state before an event is the state after its prev events::

    one prev, stored in the timeline   -> its state group, nothing loaded (fast path)
    several prevs                      -> resolve_state over their states
    a prev we do not have (a gap)      -> /state_ids at that prev from the sender,
                                          the missing events fetched as outliers
                                          (many: /state, whole), plus the prev
                                          itself if it is state; all of it or
                                          nothing (never a state with holes)

The gap's state is fetched before the room's lock is taken
(``state_after_gap``, called by the pipeline's prefetch); ``state_before``
runs under the lock and never touches the network.

The result names a base group and a delta from it, so the persister writes
only the difference (never a copy of the whole state).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from federation.pdu.fetch import EventFetcher
from federation.pdu.fetch_auth import AuthFetcher
from federation.pdu.graph import IdMap, RoomGraph, diff
from federation.pdu.resolve import resolve
from homeserver.events.model import Event
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo

# Up to this many missing events at a gap are fetched one by one (/event);
# more, and the whole state comes with one /state request.
MAX_SINGLE_GAP_FETCHES = 50

log = logging.getLogger("myelin.federation.pdu")


# A ``/state_ids`` answer: (state event ids, auth chain ids).
StateIds = tuple[list[str], list[str]]


@dataclass
class StateBefore:
    group: int | None
    delta: dict[int, int | None] | None
    # The whole state as ids, when it had to be computed (not the fast path).
    ids: IdMap | None
    prev_nids: list[int]


class StateAtIncoming:
    def __init__(self, graph: RoomGraph, fetcher: EventFetcher, auth: AuthFetcher) -> None:
        self.graph = graph
        self.fetcher = fetcher
        self.auth = auth

    async def state_before(
        self, room: RoomInfo, event: Event, gaps: Mapping[str, IdMap]
    ) -> StateBefore | None:
        """None when the state cannot be determined (a prev we lack whose state
        was not had). Under the room's lock, so never the network: ``gaps`` holds
        the states after missing prevs, fetched before the lock was taken
        (``state_after_gap``). Raises ``MissingEvents`` when resolving the prevs'
        states meets a hole."""
        if not event.prev_event_ids:
            return StateBefore(None, None, {}, [])  # the create event (backfilled)
        prevs = await self.graph.rooms.events.by_ids(event.prev_event_ids)
        in_timeline = {i: s for i, s in prevs.items() if not s.outlier}
        prev_nids = [s.event_nid for s in in_timeline.values() if s.rejected_reason is None]
        if len(event.prev_event_ids) == 1 and len(in_timeline) == 1:
            (only,) = in_timeline.values()
            return StateBefore(only.state_group, None, None, prev_nids)
        sets: list[IdMap] = []
        base: StoredEvent | None = None
        for prev_id in event.prev_event_ids:
            stored = in_timeline.get(prev_id)
            if stored is not None:
                base = base or stored
                sets.append(await self.graph.ids_at_group(stored.state_group))
                continue
            after = gaps.get(prev_id)
            if after is None:
                return None
            sets.append(after)
        ids = await resolve(self.graph, room.version, sets)
        base_group = None if base is None else base.state_group
        base_nids = await self.graph.rooms.state.state_at_group(base_group) if base_group else {}
        delta = diff(await self.graph.to_nids(ids), base_nids)
        return StateBefore(base_group, delta, ids, prev_nids)

    async def state_after_gap(self, origin: str, room: RoomInfo, prev_id: str) -> IdMap | None:
        """The state after a prev event we lack, as the sender sees it."""
        answer = await self.fetcher.state_ids(origin, room.room_id, prev_id)
        if answer is None:
            return None
        return await self.state_from(origin, room, prev_id, answer)

    async def state_from(
        self, origin: str, room: RoomInfo, prev_id: str, answer: StateIds
    ) -> IdMap | None:
        """``state_after_gap`` with the origin's ``/state_ids`` answer at ``prev_id`` in
        hand: the events it names that we lack fetched and stored, the state as ids."""
        state_ids, chain_ids = answer
        missing = await self.graph.missing([*chain_ids, *state_ids, prev_id])
        fetched: list[Event] = []
        if len(missing) > MAX_SINGLE_GAP_FETCHES:
            # Many events: the whole state and its chain in one answer, not one by one.
            fetched = await self.fetcher.state(origin, room.room_id, prev_id, room.version) or []
            had = {e.event_id for e in fetched}
            missing = [i for i in missing if i not in had]
        for event_id in missing[:MAX_SINGLE_GAP_FETCHES]:
            got = await self.fetcher.event(origin, event_id, room.version)
            if got is not None:
                fetched.append(got)
        await self.auth.store_outliers(room, fetched)
        out, lacking = await self.held(state_ids, prev_id)
        if lacking:
            # Never a state with holes: the event waits for a sender that can tell.
            log.warning(
                "state at %s from %s: %d of its %d state events cannot be had",
                prev_id,
                origin,
                len(lacking),
                len(state_ids),
            )
            return None
        return out

    async def held(self, state_ids: list[str], prev_id: str) -> tuple[IdMap, list[str]]:
        """The state after ``prev_id`` (``state_ids``: the state at it, then
        ``prev_id`` itself) from the events of it we hold, and the ids of those we
        lack. No network: ``state_from`` fetches what lacks first; a backfill into a
        partial-state room stores its history on this much while the resync brings
        the rest (``federation.pdu.backfill``)."""
        stored = await self.graph.rooms.events.by_ids([*state_ids, prev_id])
        lacking = [i for i in state_ids if i not in stored]
        out: IdMap = {}
        for event_id in state_ids:
            s = stored.get(event_id)
            if s is not None and s.rejected_reason is None and s.event.is_state():
                out[s.event.state_tuple()] = event_id
        prev = stored.get(prev_id)
        if prev is not None and prev.event.is_state() and prev.rejected_reason is None:
            out[prev.event.state_tuple()] = prev_id
        return out, lacking

    async def fetch_event(self, origin: str, room: RoomInfo, event_id: str) -> None:
        """``event_id`` from ``origin``, with its auth chain, stored as an outlier if
        we lack it (the event at a gap in the history)."""
        if not await self.graph.missing([event_id]):
            return
        got = await self.fetcher.event(origin, event_id, room.version)
        if got is not None and await self.auth.ensure(origin, room, got):
            await self.auth.store_outliers(room, [got])
