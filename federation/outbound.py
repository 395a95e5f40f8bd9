"""Outbound PDUs: who must receive a room event, and the seam to whatever delivers it.

Design note
-----------
``PduSink`` is the seam: ``send_pdu(destinations, event_json)``. The
``fedsend`` branch brings the real one (a persisted per-destination outbox
with transactions, back-off and catch-up; DESIGN rule 6) and replaces
``DirectSender`` at merge. ``DirectSender`` is a stand-in for tests only:
it PUTs a one-PDU ``/send/{txnId}`` transaction to each destination at once,
keeps nothing, and logs failures; a peer that is down misses the event.

``OutboundRooms.event_persisted`` is RoomService's event_persisted hook: a
locally created event goes to every other server with a joined member
(plus the target's server of a membership event, e.g. a kicked user's).
Events received over federation are not relayed, except those that arrive
through a handshake (send_join, send_leave, send_knock), which the resident
server must send on: ``relay`` does that.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any, Protocol

from federation.client import FederationClient, encode_path
from federation.errors import FederationError
from homeserver.clock import Clock
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo

log = logging.getLogger("myelin.federation.outbound")


class PduSink(Protocol):
    async def send_pdu(self, destinations: set[str], event_json: dict[str, Any]) -> None:
        """Queue ``event_json`` for delivery to each destination (never raises for a peer)."""


class DirectSender:
    """Test stand-in for the fedsend outbox: one immediate transaction per PDU and peer."""

    def __init__(self, server_name: str, client: FederationClient, clock: Clock) -> None:
        self.server_name = server_name
        self.client = client
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()
        self._order: dict[str, asyncio.Lock] = {}

    async def send_pdu(self, destinations: set[str], event_json: dict[str, Any]) -> None:
        for destination in destinations:
            task = asyncio.create_task(self._send(destination, event_json))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, destination: str, pdu: dict[str, Any]) -> None:
        lock = self._order.setdefault(destination, asyncio.Lock())
        txn_id = f"{self.clock.now_ms()}.{secrets.token_hex(4)}"
        body = {"origin": self.server_name, "origin_server_ts": self.clock.now_ms(), "pdus": [pdu]}
        path = encode_path("_matrix", "federation", "v1", "send", txn_id)
        async with lock:  # one at a time per peer, in the order they were queued
            try:
                await self.client.put_json(destination, path, body)
            except FederationError as e:
                log.warning("PDU to %s not delivered: %s", destination, e.error)

    async def idle(self) -> None:
        """Wait until everything queued so far has been attempted (tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)


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
            await self.sink.send_pdu(destinations, ev.pdu)
