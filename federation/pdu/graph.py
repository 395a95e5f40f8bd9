"""Reading the stored room graph in the shapes federation needs: state maps keyed
by (type, state_key) with event ids, auth chains, and nid conversions.

Full state maps are loaded only where the spec needs whole states (forks,
gaps, /state, send_join); the single-prev path of the pipeline never does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from homeserver.events.model import Event
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent

StateKey = tuple[str, str]
IdMap = dict[StateKey, str]

MAX_AUTH_CHAIN = 20_000


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

    async def auth_chain(self, ids: Iterable[str]) -> dict[str, StoredEvent]:
        """Every stored event reachable from ``ids`` through ``auth_events`` (``ids`` excluded
        unless reached)."""
        out: dict[str, StoredEvent] = {}
        frontier: set[str] = set()
        for s in (await self.rooms.events.by_ids(ids)).values():
            frontier.update(s.event.auth_event_ids)
        while frontier and len(out) < MAX_AUTH_CHAIN:
            found = await self.rooms.events.by_ids(frontier - out.keys())
            out.update(found)
            frontier = set()
            for s in found.values():
                frontier.update(a for a in s.event.auth_event_ids if a not in out)
        return out

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


def diff(new: Mapping[int, int], old: Mapping[int, int]) -> dict[int, int | None]:
    """The delta turning state ``old`` into state ``new`` (nid maps)."""
    out: dict[int, int | None] = {k: v for k, v in new.items() if old.get(k) != v}
    out.update({k: None for k in old if k not in new})
    return out
