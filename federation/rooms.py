"""FederatedRooms: everything about room events across servers, in one object
for the composition root.

Seams with the transaction layer (``federation.relay``):
- inbound: the receiver of ``PUT /send`` calls ``handle_room_pdus(origin, pdus)`` with
  each room's PDUs (``handle_pdu(origin, pdu) -> str | None`` one by one) and names
  them with ``event_id_of(pdu)``;
- outbound: a ``PduSink`` (``enqueue_pdu(destinations, pdu)``) and a
  ``TxnOutbox`` (``enqueue_pdu_in(q, ...)``), the persisted per-destination
  outbox (``FederationSender``).

``attach`` hooks it into the rooms area: RoomReader.backfiller (/messages
history through /backfill), EventPersister.txn_hooks (outbound,
in the event's own transaction), RoomService.invite_exchange (remote invites) and
MembershipService.remote (remote join/knock/leave).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation.client import FederationClient
from federation.keyring import Keyring
from federation.membership.partial_state import PartialStateJoins
from federation.membership.remote import RemoteMembership
from federation.membership.resident import ResidentMembership
from federation.outbound import OutboundRooms, PduSink, TxnOutbox
from federation.partial_state_store import PartialStateStore
from federation.pdu.backfill import RoomBackfiller
from federation.pdu.chain import ChainIngest
from federation.pdu.fetch import EventFetcher
from federation.pdu.parse import PduDropped, room_id_of
from federation.pdu.pipeline import PduPipeline
from federation.reads import RoomReads
from federation.receiver import event_id_v11
from federation.rooms_api import RoomsFederationApi
from homeserver.clock import Clock
from homeserver.events.keys import SigningKey
from homeserver.events.signing import compute_event_id
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.service import RoomService


class FederatedRooms:
    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        clock: Clock,
        client: FederationClient,
        keyring: Keyring,
        rooms: RoomService,
        sink: PduSink,
        outbox: TxnOutbox | None = None,
        partial_state_joins: bool = False,
    ) -> None:
        self.rooms = rooms
        self.pipeline = PduPipeline(rooms, EventFetcher(client, keyring), keyring)
        self.chains = ChainIngest(self.pipeline)
        self.outbound = OutboundRooms(server_name, rooms, sink, outbox)
        self.resident = ResidentMembership(
            server_name, signing_key, rooms, self.pipeline, self.outbound
        )
        self.remote = RemoteMembership(
            server_name,
            signing_key,
            clock,
            client,
            rooms,
            self.pipeline,
            self.resident,
            self.outbound,
        )
        self.partial = PartialStateJoins(
            server_name,
            clock,
            client,
            rooms,
            self.pipeline,
            PartialStateStore(rooms.persister.db),
        )
        self.pipeline.is_partial = self.partial.is_partial
        self.outbound.partial = self.partial.store
        self.remote.partial = self.partial
        self.remote.partial_enabled = partial_state_joins
        self.reads = RoomReads(server_name, rooms, self.pipeline, self.outbound)
        self.backfiller = RoomBackfiller(server_name, clock, client, self.pipeline, self.outbound)
        self.backfiller.resync_wait = self.partial.wait_round
        self.backfiller.history_first = self.partial.history_first
        self.backfiller.ahead_of_round = self.partial.ahead_of_round
        self.backfiller.defer_gap = self.partial.defer_gap

    def attach(self, memberships: MembershipService, reader: RoomReader | None = None) -> None:
        self.rooms.persister.txn_hooks.append(self.outbound.in_transaction)
        self.rooms.persister.txn_hooks.append(self.pipeline.on_persisted)
        self.rooms.invite_exchange = self.remote.exchange_invite
        self.rooms.full_state_wait = self.partial.wait_for_members
        memberships.remote = self.remote
        self.resident.blocked = memberships.is_blocked
        self.resident.invite_protection = memberships.invite_protection
        if reader is not None:
            reader.backfiller = self.backfiller

    async def handle_pdu(self, origin: str, pdu: Any) -> str | None:
        """The inbound seam: one PDU of a transaction; None or an error string."""
        return await self.pipeline.handle_pdu(origin, pdu)

    async def handle_room_pdus(self, origin: str, pdus: list[dict[str, Any]]) -> list[str | None]:
        """The inbound seam for one room's PDUs of a transaction, in order: chains of
        them are persisted together (``federation.pdu.chain``)."""
        return await self.chains.handle_many(origin, pdus)

    async def server_allowed(self, room_id: str, server_name: str) -> bool:
        """Whether the room's m.room.server_acl lets ``server_name`` take part
        (rooms unknown here have no ACL to apply)."""
        room = await self.rooms.rooms.get_room(room_id)
        return room is None or await self.pipeline.server_allowed(room, server_name)

    async def event_id_of(self, pdu: Any) -> str | None:
        """A PDU's event id under its room's version; for a room unknown here
        (the PDU is refused), under the version 11/12 rules so the origin
        still gets an answer for it."""
        if not isinstance(pdu, dict):
            return None
        try:
            room = await self.rooms.rooms.get_room(room_id_of(pdu))
        except PduDropped:
            room = None
        if room is None:
            return await event_id_v11(pdu)
        try:
            return compute_event_id(pdu, room.version)
        except (ValueError, TypeError, KeyError):
            return None

    def routes(self) -> list[web.RouteDef]:
        return RoomsFederationApi(self.resident, self.reads).routes()
