"""Server-server API. Imports homeserver/, never the reverse; homeserver/app.py wires it in.

``Federation`` holds the long-lived federation objects of one server process:
the outbound client, the keyring, the inbound request authenticator and the
route groups. Later areas (sender, receiver, membership) take these from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from federation.auth import AUTHENTICATOR, RequestAuthenticator
from federation.client import FederationClient
from federation.keyring import Keyring
from federation.keys import KeyApi
from federation.keystore import ServerKeyStore
from federation.outbound import DirectSender
from federation.rooms import FederatedRooms
from federation.server import FederationApi, WellKnownServerApi
from homeserver.accounts.service import AccountService
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.events.keys import SigningKey
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.service import RoomService
from homeserver.storage.database import Database


@dataclass
class Federation:
    config: Config
    client: FederationClient
    keyring: Keyring
    authenticator: RequestAuthenticator
    apis: list[KeyApi | FederationApi]
    signing_key: SigningKey
    clock: Clock
    rooms: FederatedRooms | None = None
    # Stand-in outbound delivery until the fedsend branch's outbox is merged.
    direct_sender: DirectSender | None = field(default=None)

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
        client = FederationClient(
            name, signing_key, clock, insecure_local=config.federation.insecure_local
        )
        keyring = Keyring(
            name,
            signing_key,
            ServerKeyStore(db),
            client,
            clock,
            config.federation.trusted_key_servers,
        )
        return cls(
            config=config,
            client=client,
            keyring=keyring,
            authenticator=RequestAuthenticator(name, keyring, clock),
            apis=[KeyApi(name, signing_key, keyring, clock), FederationApi(name, accounts)],
            signing_key=signing_key,
            clock=clock,
        )

    def attach_rooms(self, rooms: RoomService, memberships: MembershipService) -> FederatedRooms:
        """Rooms across servers. Outbound PDUs go through ``DirectSender`` and inbound
        transactions through ``send_stub`` until the fedsend branch replaces both."""
        name = self.config.server_name
        self.direct_sender = DirectSender(name, self.client, self.clock)
        self.rooms = FederatedRooms(
            name, self.signing_key, self.clock, self.client, self.keyring, rooms, self.direct_sender
        )
        self.rooms.attach(memberships)
        return self.rooms

    def install(self, app: web.Application) -> None:
        """Add the federation routes and the request authenticator to the federation app."""
        app[AUTHENTICATOR] = self.authenticator
        for api in self.apis:
            app.add_routes(api.routes())
        if self.rooms is not None:
            app.add_routes(self.rooms.routes(with_send_stub=True))

    def client_routes(self) -> list[web.RouteDef]:
        """Routes for the client listener: ``/.well-known/matrix/server`` when delegating."""
        delegated = self.config.federation.well_known_server
        return WellKnownServerApi(delegated).routes() if delegated else []

    async def close(self) -> None:
        if self.direct_sender is not None:
            await self.direct_sender.close()
        await self.client.close()
