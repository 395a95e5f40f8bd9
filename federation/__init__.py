"""Server-server API. Imports homeserver/, never the reverse; homeserver/app.py wires it in.

``Federation`` holds the long-lived federation objects of one server process:
the outbound client, the keyring, the inbound request authenticator and the
route groups. ``connect`` adds the sending and receiving side (``federation.relay``:
sender, receiver, EDUs, remote device lists and keys) once the homeserver's
services exist; ``attach_rooms`` then puts rooms across servers on top of it
(``federation.rooms``: PDU pipeline, membership handshakes, graph reads).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from federation.aliases import RemoteAliases
from federation.auth import AUTHENTICATOR, RequestAuthenticator
from federation.client import FederationClient
from federation.hierarchy import HierarchyFederationApi, RemoteHierarchies
from federation.keyring import Keyring
from federation.keys import KeyApi
from federation.keystore import ServerKeyStore
from federation.media import FederationMediaApi, RemoteMedia
from federation.outbound_edus import OutboundEdus, ServersInRoom, ServersSharingRoom
from federation.profiles import RemoteProfiles
from federation.public_rooms import PublicRoomsFederationApi, RemotePublicRooms
from federation.relay import Relay, build_relay
from federation.rooms import FederatedRooms
from federation.server import FederationApi, WellKnownServerApi
from federation.third_party_invites import (
    RemoteThirdPartyInvites,
    ThirdPartyInviteFederationApi,
)
from federation.timestamp import RemoteTimestamps, TimestampFederationApi
from homeserver.accounts.service import AccountService
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.e2ee.keys import KeysService
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.events.keys import SigningKey
from homeserver.media.service import MediaService
from homeserver.rooms.aliases import AliasService
from homeserver.rooms.directory import RoomDirectory
from homeserver.rooms.ephemeral.interfaces import IsJoined
from homeserver.rooms.ephemeral.receipts import ReceiptService
from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.rooms.hierarchy import SpaceHierarchy
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.service import EventHook, RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.third_party_invites import ThirdPartyInvites
from homeserver.rooms.timestamp import TimestampLookup
from homeserver.server_lists import ServerPolicy
from homeserver.storage.database import Database
from homeserver.userdata.presence import PresenceService


@dataclass
class Federation:
    config: Config
    client: FederationClient
    keyring: Keyring
    authenticator: RequestAuthenticator
    apis: list[Any]
    db: Database
    clock: Clock
    accounts: AccountService
    signing_key: SigningKey
    relay: Relay | None = None
    rooms: FederatedRooms | None = None
    # Outbox resumes started for workers' catch-ups (kept so they are not collected).
    _resumes: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def build(
        cls,
        config: Config,
        db: Database,
        clock: Clock,
        signing_key: SigningKey,
        accounts: AccountService,
    ) -> Federation:
        name = config.server_name
        policy = ServerPolicy(config.federation.allow_list, config.federation.deny_list)
        client = FederationClient(
            name, signing_key, clock, insecure_local=config.federation.insecure_local
        )
        client.policy = policy
        keyring = Keyring(
            name,
            signing_key,
            ServerKeyStore(db),
            client,
            clock,
            config.federation.trusted_key_servers,
        )
        accounts.remote_profile_lookup = RemoteProfiles(client).lookup
        return cls(
            config=config,
            client=client,
            keyring=keyring,
            authenticator=RequestAuthenticator(name, keyring, clock, policy),
            apis=[KeyApi(name, signing_key, keyring, clock), FederationApi(name, accounts)],
            db=db,
            clock=clock,
            accounts=accounts,
            signing_key=signing_key,
        )

    def connect(
        self,
        *,
        keys: KeysService,
        to_device: ToDeviceService,
        typing: TypingService,
        receipts: ReceiptService,
        presence: PresenceService,
        is_joined: IsJoined,
        servers_sharing_room_with: ServersSharingRoom,
        servers_in_room: ServersInRoom,
    ) -> Relay:
        """Build the sender/receiver side and subscribe it to the services' hooks."""
        self.relay = build_relay(
            self.config,
            self.db,
            self.clock,
            self.client,
            self.accounts,
            keys=keys,
            to_device=to_device,
            typing=typing,
            receipts=receipts,
            presence=presence,
            is_joined=is_joined,
            servers_sharing_room_with=servers_sharing_room_with,
            servers_in_room=servers_in_room,
        )
        self.apis.extend(self.relay.apis)
        return self.relay

    def attach_rooms(
        self,
        rooms: RoomService,
        memberships: MembershipService,
        reader: RoomReader | None = None,
    ) -> FederatedRooms:
        """Rooms across servers, on top of the relay (``connect`` first): outbound
        PDUs go to the persisted outbox, inbound PDUs of ``/send`` to the PDU pipeline."""
        if self.relay is None:
            raise RuntimeError("Federation.connect must run before attach_rooms")
        self.rooms = FederatedRooms(
            self.config.server_name,
            self.signing_key,
            self.clock,
            self.client,
            self.keyring,
            rooms,
            self.relay.sender,
            self.relay.sender,
            partial_state_joins=self.config.federation.partial_state_joins,
        )
        self.rooms.attach(memberships, reader)
        # A process's claim on a partial-state room's resync lasts as a lease does.
        self.rooms.partial.claim_ms = self.config.worker_lease_ms
        # Typing, receipts and presence of a room joined with partial state also go to
        # the servers the resident named, until the members are all here.
        self.relay.outbound.servers_in_room = self.rooms.partial.with_partial_servers(
            self.relay.outbound.servers_in_room
        )
        self.relay.receiver.pdu_handler = self.rooms.handle_pdu
        self.relay.receiver.room_pdus_handler = self.rooms.handle_room_pdus
        self.relay.receiver.event_id_of = self.rooms.event_id_of
        self.relay.receiver.edus.server_allowed = self.rooms.server_allowed
        # Remote device lists are kept only while we share a room with their users.
        rooms.event_persisted_hooks.append(self.relay.device_lists.on_event)
        self.rooms.partial.merged_hooks.append(self.relay.device_lists.room_mates_arrived)
        rooms.event_persisted_hooks.append(_presence_on_join(rooms, self.relay.outbound))
        return self.rooms

    def attach_directory(
        self,
        directory: RoomDirectory,
        aliases: AliasService,
        hierarchy: SpaceHierarchy,
        timestamps: TimestampLookup,
    ) -> None:
        """The room directory, space hierarchies and jump-to-date over federation: ours
        served, other servers' asked; other servers' aliases resolved through them."""
        self.apis.append(PublicRoomsFederationApi(directory))
        directory.remote_public_rooms = RemotePublicRooms(self.client).query
        aliases.remote_lookup = RemoteAliases(self.client).resolve
        self.apis.append(HierarchyFederationApi(hierarchy))
        hierarchy.remote = RemoteHierarchies(self.client).query
        self.apis.append(TimestampFederationApi(timestamps))
        timestamps.remote = RemoteTimestamps(self.client).query

    def attach_third_party_invites(self, invites: ThirdPartyInvites) -> None:
        """Redeemed third-party invites handed between the invitee's and inviter's servers."""
        self.apis.append(ThirdPartyInviteFederationApi(invites))
        invites.remote_exchange = RemoteThirdPartyInvites(self.client).forward

    def attach_media(self, media: MediaService) -> None:
        """Serve our media to other servers and fetch theirs for our users."""
        self.apis.append(FederationMediaApi(media))
        media.remote = RemoteMedia(self.client)

    async def start(self) -> None:
        """Resume sending to every destination with queued items (after a restart)."""
        if self.relay is not None:
            await self.relay.start()
        if self.rooms is not None:
            # Rooms joined with partial state before a restart: fetch their whole state
            # (alone, this process takes every claim; see scaleout for several).
            await self.rooms.partial.store.take_all(self.rooms.partial.owner)
            await self.rooms.partial.resume()

    def send_across_processes(
        self,
        publish: Callable[[str, list[str]], None],
        subscribe: Callable[[str, Callable[[list[str] | None], None]], None],
        topic: str,
        owns: Callable[[str], bool],
    ) -> None:
        """Several processes: send only for the destinations ``owns`` says are this
        process's (its sender shards' leases); announce the others' new rows on
        ``topic``, and wake what other processes announce there when it is ours.
        After a missed message (None), look at every destination we own again."""
        if self.relay is None:
            return
        sender = self.relay.sender
        sender.forward = lambda destinations: publish(topic, destinations)
        sender.owns = owns

        def on_announce(destinations: list[str] | None) -> None:
            if destinations is not None:
                sender.wake_owned(destinations)
            else:
                self.resume_owned()

        subscribe(topic, on_announce)

    def resume_owned(self) -> None:
        """Look at every destination with queued rows that this process now sends for
        (a sender shard just gained, or a catch-up after lost bus messages)."""
        if self.relay is None:
            return
        task = asyncio.get_running_loop().create_task(self.relay.sender.start())
        self._resumes.add(task)
        task.add_done_callback(self._resumes.discard)

    def install(self, app: web.Application) -> None:
        """Add the federation routes and the request authenticator to the federation app."""
        app[AUTHENTICATOR] = self.authenticator
        for api in self.apis:
            app.add_routes(api.routes())
        if self.rooms is not None:
            app.add_routes(self.rooms.routes())

    def client_routes(self) -> list[web.RouteDef]:
        """Routes for the client listener: ``/.well-known/matrix/server`` when delegating."""
        delegated = self.config.federation.well_known_server
        return WellKnownServerApi(delegated).routes() if delegated else []

    async def close(self) -> None:
        if self.rooms is not None:
            await self.rooms.partial.close()
        if self.relay is not None:
            await self.relay.close()
        await self.client.close()


def _presence_on_join(rooms: RoomService, outbound: OutboundEdus) -> EventHook:
    """The hook that hands every join (not an outlier's) to ``OutboundEdus.on_join``."""

    async def hook(stored: StoredEvent, room: RoomInfo) -> None:
        ev = stored.event
        if ev.type != "m.room.member" or ev.state_key is None or stored.outlier:
            return
        if ev.content.get("membership") != "join":
            return

        async def local_members() -> list[str]:
            return await rooms.members.local_users(room.room_nid, rooms.server_name)

        outbound.on_join(ev.state_key, room.room_id, local_members)

    return hook
