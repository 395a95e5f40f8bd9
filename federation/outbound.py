"""Outbound PDUs: who must receive a room event, and the seam to whatever delivers it.

Design note
-----------
``PduSink`` is the seam: ``enqueue_pdu(destinations, pdu)``. In the server
it is ``FederationSender`` (``federation.sender``): the PDU is written to
the per-destination outbox before anything is sent, then delivered in
transactions with back-off and catch-up (DESIGN rule 6).

``OutboundRooms.event_persisted`` is RoomService's event_persisted hook: a
locally created event goes to every other server with a joined member
(plus the target's server of a membership event, e.g. a kicked user's).
Events received over federation are not relayed, except those that arrive
through a handshake (send_join, send_leave, send_knock), which the resident
server must send on: ``relay`` does that.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo


class PduSink(Protocol):
    async def enqueue_pdu(self, destinations: Iterable[str], pdu: dict[str, Any]) -> None:
        """Queue ``pdu`` for delivery to each destination (never raises for a peer)."""


class OutboundRooms:
    def __init__(self, server_name: str, rooms: RoomService, sink: PduSink) -> None:
        self.server_name = server_name
        self.rooms = rooms
        self.sink = sink
        # Our events that a resident server relays for us (our send_join's
        # join): not sent again by the hook.
        self.handshaken: set[str] = set()

    async def servers_in_room(self, room: RoomInfo) -> set[str]:
        """Servers with a joined member in the room's current state."""
        joined = await self.rooms.members.members(room.room_nid, ("join",))
        return {domain_of(m.user_id) for m in joined}

    async def event_persisted(self, stored: StoredEvent, room: RoomInfo) -> None:
        ev = stored.event
        if ev.event_id in self.handshaken:
            self.handshaken.discard(ev.event_id)
            return
        if domain_of(ev.sender) != self.server_name or stored.outlier:
            return
        if stored.soft_failed or stored.rejected_reason is not None:
            return
        await self.relay(stored, room, exclude=set())

    async def relay(self, stored: StoredEvent, room: RoomInfo, exclude: set[str]) -> None:
        ev = stored.event
        destinations = await self.servers_in_room(room)
        if ev.type == "m.room.member" and ev.state_key and ev.membership != "invite":
            destinations.add(domain_of(ev.state_key))
        destinations -= exclude | {self.server_name}
        if destinations:
            await self.sink.enqueue_pdu(destinations, ev.pdu)
