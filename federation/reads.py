"""Read endpoints of the room graph for other servers (server-server "Retrieving
events", "Backfilling and retrieving missing events", "Retrieving event
authorisation information", "Querying for information": directory).

Every read checks the room's server ACL and history visibility for the
requesting server: a server may read an event when the room is
world-readable at it, or one of its users was joined (or invited, unless
visibility is ``joined``) at it, or (``shared``) one of its users is joined now.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from federation.outbound import OutboundRooms
from federation.pdu.acl import denied
from federation.pdu.pipeline import PduPipeline
from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo

MAX_LIMIT = 100
HISTORY = ("m.room.history_visibility", "")
MEMBER = "m.room.member"


class RoomReads:
    def __init__(
        self, server_name: str, rooms: RoomService, pipeline: PduPipeline, outbound: OutboundRooms
    ) -> None:
        self.server_name = server_name
        self.rooms = rooms
        self.pipeline = pipeline
        self.graph = pipeline.graph
        self.outbound = outbound

    async def _room(self, origin: str, room_id: str) -> RoomInfo:
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if not await self.pipeline.server_allowed(room, origin):
            raise denied()
        return room

    async def _may_see(
        self,
        origin: str,
        room: RoomInfo,
        stored: StoredEvent,
        joined: dict[str, bool] | None = None,
    ) -> bool:
        """Whether ``origin`` may see ``stored``. Cheapest first: the history visibility
        alone (one key of the event's state); ``shared`` and a member of ``origin``
        joined now (one row, memoised in ``joined`` for a request's events); only then
        the memberships of ``origin``'s users at the event (their keys picked from the
        state's key ids: a big room's other members are never loaded)."""
        at = await self.rooms.state_at(stored.state_group, [HISTORY])
        hv = at.get(HISTORY)
        value = None if hv is None else hv.event.content.get("history_visibility")
        vis = value if isinstance(value, str) else "shared"
        if vis == "world_readable":
            return True
        if vis == "shared" and await self._joined_now(origin, room, joined):
            return True
        if stored.state_group is None:
            return False
        nids = await self.rooms.state.state_at_group(stored.state_group)
        keys = await self.rooms.rooms.keys_for_nids(nids.keys())
        theirs = [
            n
            for k, n in nids.items()
            if keys.get(k, ("", ""))[0] == MEMBER and domain_of(keys[k][1]) == origin
        ]
        allowed = ("join",) if vis == "joined" else ("join", "invite")
        found_members = await self.rooms.events.by_nids(theirs)
        return any(s.event.membership in allowed for s in found_members.values())

    async def _joined_now(self, origin: str, room: RoomInfo, memo: dict[str, bool] | None) -> bool:
        """A user of ``origin`` is joined now (or, the room being partial here, the
        resident named ``origin`` among its servers)."""
        if memo is not None and origin in memo:
            return memo[origin]
        now = await self.rooms.members.has_joined_on(room.room_nid, origin)
        if not now:
            now = origin in await self.outbound.servers_in_room(room)
        if memo is not None:
            memo[origin] = now
        return now

    async def _event_in(
        self, origin: str, room: RoomInfo, event_id: str, *, with_state: bool = False
    ) -> StoredEvent:
        """An event of the room that ``origin`` may see; ``with_state``: one whose
        state we can tell (an outlier has no state we know, and a rejected event
        none to give: M_NOT_FOUND for both, as for an unknown event)."""
        stored = await self.rooms.events.by_id(event_id)
        if stored is None or stored.room_nid != room.room_nid or stored.outlier:
            raise not_found("Event not found")
        if with_state and stored.rejected_reason is not None:
            raise not_found("Event not found")
        if not await self._may_see(origin, room, stored):
            raise forbidden("Your server may not see this event")
        return stored

    async def event(self, origin: str, event_id: str) -> dict[str, Any]:
        stored = await self.rooms.events.by_id(event_id)
        if stored is None or stored.rejected_reason is not None:
            raise not_found("Event not found")
        rooms = await self.rooms.rooms.rooms_by_nid([stored.room_nid])
        room = rooms[stored.room_nid]
        if not await self.pipeline.server_allowed(room, origin):
            raise denied()
        if not stored.outlier and not await self._may_see(origin, room, stored):
            raise not_found("Event not found")
        return self._pdus([stored])

    def _pdus(self, events: Iterable[StoredEvent]) -> dict[str, Any]:
        return {
            "origin": self.server_name,
            "origin_server_ts": self.rooms.clock.now_ms(),
            "pdus": [s.event.pdu for s in events],
        }

    async def state(
        self, origin: str, room_id: str, event_id: str, ids_only: bool
    ) -> dict[str, Any]:
        room = await self._room(origin, room_id)
        partial = self.pipeline.is_partial
        if partial is not None and await partial(room.room_nid):
            # Joined with partial state: our state lacks members; another server must answer.
            raise not_found("This server does not have the room's whole state yet")
        stored = await self._event_in(origin, room, event_id, with_state=True)
        state = await self.graph.state_before(stored)
        if ids_only:  # ids only: the chain is walked without loading its events
            chain_ids = (await self.graph.auth_graph(state.values())).chain()
            return {"pdu_ids": list(state.values()), "auth_chain_ids": sorted(chain_ids)}
        chain = await self.graph.auth_chain(state.values())
        events = await self.rooms.events.by_ids(state.values())
        return {
            "pdus": [s.event.pdu for s in events.values()],
            "auth_chain": [s.event.pdu for s in chain.values()],
        }

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> dict[str, Any]:
        room = await self._room(origin, room_id)
        stored = await self._event_in(origin, room, event_id)
        chain = await self.graph.auth_chain([stored.event.event_id])
        return {"auth_chain": [s.event.pdu for s in chain.values()]}

    async def _walk_back(
        self, room: RoomInfo, start: Iterable[str], stop: set[str], limit: int, min_depth: int
    ) -> list[StoredEvent]:
        """Events reached backwards through prev_events from ``start``, newest first."""
        out: dict[str, StoredEvent] = {}
        frontier = [i for i in start if i not in stop]
        while frontier and len(out) < limit:
            found = await self.rooms.events.by_ids(frontier)
            frontier = []
            for s in sorted(found.values(), key=lambda s: -s.event.depth):
                if len(out) >= limit or s.room_nid != room.room_nid or s.event.depth < min_depth:
                    continue
                if s.rejected_reason is None and s.event.event_id not in out:
                    out[s.event.event_id] = s
                    frontier += [
                        p for p in s.event.prev_event_ids if p not in stop and p not in out
                    ]
        return sorted(out.values(), key=lambda s: -s.event.depth)

    async def backfill(
        self, origin: str, room_id: str, from_ids: list[str], limit: int
    ) -> dict[str, Any]:
        room = await self._room(origin, room_id)
        if not from_ids:
            raise invalid_param("'v' is required")
        found = await self._walk_back(room, from_ids, set(), min(max(limit, 1), MAX_LIMIT), 0)
        joined: dict[str, bool] = {}
        visible = [s for s in found if await self._may_see(origin, room, s, joined)]
        return self._pdus(visible)

    async def missing_events(self, origin: str, room_id: str, body: Any) -> dict[str, Any]:
        room = await self._room(origin, room_id)
        if not isinstance(body, dict):
            raise invalid_param("Expected a JSON object")
        earliest = [e for e in body.get("earliest_events", []) if isinstance(e, str)]
        latest = [e for e in body.get("latest_events", []) if isinstance(e, str)]
        limit = body.get("limit", 10)
        limit = min(max(limit, 1), MAX_LIMIT) if isinstance(limit, int) else 10
        min_depth = body.get("min_depth", 0)
        min_depth = min_depth if isinstance(min_depth, int) else 0
        latest_found = await self.rooms.events.by_ids(latest)
        start = [p for s in latest_found.values() for p in s.event.prev_event_ids]
        stop = set(earliest) | set(latest)
        found = await self._walk_back(room, start, stop, limit, min_depth)
        joined: dict[str, bool] = {}
        visible = [s for s in found if await self._may_see(origin, room, s, joined)]
        return {"events": [s.event.pdu for s in reversed(visible)]}

    async def query_directory(self, room_alias: str) -> dict[str, Any]:
        if domain_of(room_alias) != self.server_name:
            raise not_found("Room alias not found")
        found = await self.rooms.rooms.get_alias(room_alias)
        room = None if found is None else await self.rooms.rooms.get_room(found[0])
        if room is None:
            raise not_found("Room alias not found")
        servers = await self.outbound.servers_in_room(room)
        return {"room_id": room.room_id, "servers": sorted(servers | {self.server_name})}
