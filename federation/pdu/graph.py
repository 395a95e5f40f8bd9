"""Reading the stored room graph in the shapes federation needs: state maps keyed
by (type, state_key) with event ids, auth chains, and nid conversions.

Full state maps are loaded only where the spec needs whole states (forks,
gaps, /state, send_join); the single-prev path of the pipeline never does.

Auth chains are walked breadth first, each level read in batched SQL
(``EventStore.auth_links``, 500 ids a query) keeping only ids: a 50,000-event
chain costs a few hundred small queries and a few MB, never its events'
JSON at once. There is no silent cut-off: a chain bigger than
``MAX_AUTH_CHAIN`` raises ``AuthChainTooBig``, and ids the walk could not
find are reported (``AuthGraph.missing``), never dropped quietly.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from homeserver.errors import MatrixError
from homeserver.events.model import Event
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent

StateKey = tuple[str, str]
IdMap = dict[StateKey, str]

MAX_AUTH_CHAIN = 500_000


class AuthChainTooBig(MatrixError):
    """An auth chain past ``MAX_AUTH_CHAIN``: refused loudly, never cut. A
    Matrix error, so a request that needed the chain gets a clear answer."""

    def __init__(self) -> None:
        super().__init__(500, "M_UNKNOWN", f"Auth chain over {MAX_AUTH_CHAIN} events")


@dataclass
class AuthGraph:
    """The auth graph reachable from some events, as ids."""

    edges: dict[str, list[str]] = field(default_factory=dict)
    rejected: set[str] = field(default_factory=set)
    # Cited (or asked for) but not stored: a hole the caller must fill or refuse.
    missing: set[str] = field(default_factory=set)

    def chain(self) -> set[str]:
        """Every event cited by a reachable one (the auth chain of the start events)."""
        return {a for cited in self.edges.values() for a in cited if a in self.edges}


class RoomGraph:
    def __init__(self, rooms: RoomService) -> None:
        self.rooms = rooms

    async def ids_at_group(self, group: int | None) -> IdMap:
        """The state in ``group`` as (type, state_key) -> event id."""
        if group is None:
            return {}
        nids = await self.rooms.state.state_at_group(group)
        return await self._to_ids(nids)

    async def current_ids(self, room_nid: int) -> IdMap:
        return await self._to_ids(await self.rooms.state.current_state(room_nid))

    async def _to_ids(self, nids: Mapping[int, int]) -> IdMap:
        keys = await self.rooms.rooms.keys_for_nids(nids.keys())
        found = await self.rooms.events.by_nids(nids.values())
        return {keys[k]: found[e].event.event_id for k, e in nids.items() if e in found}

    async def to_nids(self, ids: Mapping[StateKey, str]) -> dict[int, int]:
        """(type, state_key) -> event id as key nid -> event nid (stored events only)."""
        key_nids = await self.rooms.rooms.key_nids(ids.keys())
        found = await self.rooms.events.by_ids(ids.values())
        return {
            key_nids[k]: found[e].event_nid for k, e in ids.items() if k in key_nids and e in found
        }

    async def events_of(self, ids: Iterable[str]) -> dict[str, Event]:
        return {i: s.event for i, s in (await self.rooms.events.by_ids(ids)).items()}

    async def auth_graph(self, ids: Iterable[str]) -> AuthGraph:
        """The ids of every event reachable from ``ids`` (included) through
        ``auth_events``, level by level, each level in batched queries."""
        graph = AuthGraph()
        frontier = list(dict.fromkeys(ids))
        while frontier:
            if len(graph.edges) + len(frontier) > MAX_AUTH_CHAIN:
                raise AuthChainTooBig()
            found = await self.rooms.events.auth_links(frontier)
            cited: set[str] = set()
            for event_id in frontier:
                link = found.get(event_id)
                if link is None:
                    graph.missing.add(event_id)
                    continue
                auth_ids, rejected = link
                graph.edges[event_id] = auth_ids
                if rejected:
                    graph.rejected.add(event_id)
                cited.update(auth_ids)
            frontier = [a for a in cited if a not in graph.edges and a not in graph.missing]
            await asyncio.sleep(0)  # a long walk lets other rooms run between levels
        return graph

    async def auth_chain(self, ids: Iterable[str]) -> dict[str, StoredEvent]:
        """Every stored event reachable from ``ids`` through ``auth_events`` (``ids`` excluded
        unless reached), in ``auth_order``. For serving chains (send_join, /state,
        event_auth); loaded in batches."""
        graph = await self.auth_graph(ids)
        found = await self.rooms.events.by_ids(graph.chain())
        return {i: found[i] for i in auth_order(found, graph.edges)}

    async def state_before(self, stored: StoredEvent) -> IdMap:
        """The state before a stored event: its group holds the state after it."""
        state = await self.ids_at_group(stored.state_group)
        ev = stored.event
        if ev.is_state() and state.get(ev.state_tuple()) == ev.event_id:
            del state[ev.state_tuple()]
            if stored.prev_state_event_nid is not None:
                nid = stored.prev_state_event_nid
                prev = await self.rooms.events.by_nids([nid])
                if nid in prev:
                    state[ev.state_tuple()] = prev[nid].event.event_id
        return state

    async def missing(self, ids: Iterable[str]) -> list[str]:
        wanted = list(dict.fromkeys(ids))
        found = await self.rooms.events.by_ids(wanted)
        return [i for i in wanted if i not in found]

    async def not_in_timeline(self, ids: Iterable[str]) -> list[str]:
        """Those of ``ids`` we do not hold in the room's graph: missing, or held only
        as outliers (an auth event fetched alone), whose state we do not know."""
        wanted = list(dict.fromkeys(ids))
        found = await self.rooms.events.by_ids(wanted)
        return [i for i in wanted if i not in found or found[i].outlier]


def auth_order(events: Mapping[str, StoredEvent], edges: Mapping[str, Sequence[str]]) -> list[str]:
    """The ids of ``events``, each after the auth events it cites (those among them),
    ties lowest depth first. A joining server that reads an auth chain in order and
    keeps the last event it sees for each state key (Sytest's federation client
    does) ends with the newest power levels, not an older one it was cited by; a
    set's order made that a coin toss. A cycle (only a forged graph has one) is put
    last, by depth."""
    citers: dict[str, list[str]] = {}
    waiting: dict[str, int] = {}
    for event_id in events:
        cited = {a for a in edges.get(event_id, ()) if a in events and a != event_id}
        waiting[event_id] = len(cited)
        for a in cited:
            citers.setdefault(a, []).append(event_id)
    ready = [(events[i].event.depth, i) for i, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, event_id = heapq.heappop(ready)
        out.append(event_id)
        for citer in citers.get(event_id, ()):
            waiting[citer] -= 1
            if waiting[citer] == 0:
                heapq.heappush(ready, (events[citer].event.depth, citer))
    if len(out) < len(events):
        out.extend(i for _, i in sorted((events[i].event.depth, i) for i in events if waiting[i]))
    return out


def diff(new: Mapping[int, int], old: Mapping[int, int]) -> dict[int, int | None]:
    """The delta turning state ``old`` into state ``new`` (nid maps)."""
    out: dict[int, int | None] = {k: v for k, v in new.items() if old.get(k) != v}
    out.update({k: None for k in old if k not in new})
    return out
