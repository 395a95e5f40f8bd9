"""Composition root: builds storage, services and HTTP routes, and runs the listeners.

This is the only module that wires areas together: services expose hooks
(device deleted, profile changed, event persisted, ...) and this module
connects them, so no service reaches for another through a global.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from federation import Federation  # the only place homeserver meets federation/
from homeserver.accounts.auth import Authenticator
from homeserver.accounts.openid import OpenIdTokens
from homeserver.accounts.service import AccountService
from homeserver.accounts.store import AccountStore
from homeserver.accounts.uia import UiaService
from homeserver.api.account import AccountApi
from homeserver.api.account_data import AccountDataApi
from homeserver.api.admin_register import AdminRegisterApi
from homeserver.api.devices import DevicesApi
from homeserver.api.discovery import DiscoveryApi
from homeserver.api.ephemeral import EphemeralApi
from homeserver.api.filters import FilterApi
from homeserver.api.openid import OpenIdApi
from homeserver.api.presence import PresenceApi
from homeserver.api.profile import ProfileApi
from homeserver.api.pushrules import PushRulesApi
from homeserver.api.whois import WhoisApi
from homeserver.clock import Clock
from homeserver.config import Config, ConfigError
from homeserver.e2ee.wiring import UNSTABLE_FEATURES as E2EE_FEATURES
from homeserver.e2ee.wiring import E2ee, build_e2ee
from homeserver.errors import not_found
from homeserver.events.keys import SigningKey, read_signing_keys
from homeserver.http.shell import cors_middleware, error_middleware
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.ephemeral.deps import RoomLinks
from homeserver.rooms.ephemeral.receipts import ReceiptService
from homeserver.rooms.ephemeral.receipts_store import ReceiptStore
from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.rooms.wiring import RoomsArea, build_rooms_area
from homeserver.storage.database import Database, connect
from homeserver.storage.migrate import migrate
from homeserver.sync.wiring import SyncArea, wire_sync
from homeserver.tls import server_ssl_context
from homeserver.userdata.services import UserDataServices

log = logging.getLogger("myelin")

SHUTDOWN_TIMEOUT_S = 10.0


def _load_signing_key(path: str) -> SigningKey:
    """The current (first) key of the signing key file; ``ConfigError`` if unusable."""
    try:
        return read_signing_keys(Path(path).read_text(encoding="utf-8"))[0]
    except (OSError, ValueError, IndexError):
        raise ConfigError(f"signing_key_path: cannot read a signing key from {path}") from None


@dataclass
class HomeServer:
    """Every long-lived object of one server process, built once at start-up."""

    config: Config
    db: Database
    clock: Clock
    signing_key: SigningKey
    limiter: RateLimiter
    auth: Authenticator
    uia: UiaService
    accounts: AccountService
    rooms_area: RoomsArea
    room_links: RoomLinks
    typing: TypingService
    receipts: ReceiptService
    userdata: UserDataServices
    e2ee: E2ee
    sync_area: SyncArea
    federation: Federation | None = None
    openid: OpenIdApi | None = None
    unstable_features: dict[str, bool] = field(default_factory=dict)
    background: list[asyncio.Task[Any]] = field(default_factory=list)

    @classmethod
    async def build(cls, config: Config) -> HomeServer:
        signing_key = _load_signing_key(config.signing_key_path)
        db = await connect(config.database_url)
        try:
            await migrate(db)
        except Exception:
            await db.close()
            raise
        clock = Clock()
        store = AccountStore(db)
        auth = Authenticator(store, clock)
        accounts = AccountService(config, store, auth, clock)
        rooms_area = build_rooms_area(config, db, clock, signing_key, accounts)
        userdata = UserDataServices.build(db, clock)

        # Typing, receipts and read markers ask the rooms area about membership
        # and events, and write m.fully_read through room account data.
        links = RoomLinks()
        links.is_joined_impl = rooms_area.is_joined
        links.event_in_room_impl = rooms_area.event_in_room

        async def set_room_account_data(
            user_id: str, room_id: str, type: str, content: dict[str, Any]
        ) -> None:
            user = await store.get_user(user_id)
            if user is None:
                raise not_found("Unknown user")
            await userdata.account_data.put_managed(user.user_nid, user_id, room_id, type, content)

        links.set_room_account_data_impl = set_room_account_data
        typing = TypingService(links.is_joined)
        receipts = ReceiptService(
            ReceiptStore(db),
            clock,
            links.is_joined,
            links.event_in_room,
            links.set_room_account_data,
        )
        e2ee = build_e2ee(
            config, db, clock, accounts, users_sharing_room_with=rooms_area.users_sharing_room_with
        )
        e2ee.keys.departed_room_mates = rooms_area.departed_room_mates
        e2ee.keys.arrived_room_mates = rooms_area.arrived_room_mates
        hs = cls(
            config=config,
            db=db,
            clock=clock,
            signing_key=signing_key,
            limiter=RateLimiter(config.rate_limits),
            auth=auth,
            uia=UiaService(db, clock),
            accounts=accounts,
            rooms_area=rooms_area,
            room_links=links,
            typing=typing,
            receipts=receipts,
            userdata=userdata,
            e2ee=e2ee,
            # /sync reads every stream; each stream's writer wakes it (sync/wiring.py).
            sync_area=wire_sync(
                db,
                rooms_area,
                typing,
                receipts,
                userdata,
                e2ee,
                accounts,
                clock,
                # Push gateways on this host only where federation may reach it too (tests).
                allow_local_push=config.federation.insecure_local,
            ),
            unstable_features=dict(E2EE_FEATURES),
        )
        hs.federation = Federation.build(config, db, clock, signing_key, accounts)
        relay = hs.federation.connect(
            keys=e2ee.keys,
            to_device=e2ee.to_device,
            typing=typing,
            receipts=receipts,
            presence=userdata.presence,
            is_joined=links.is_joined,
            servers_sharing_room_with=rooms_area.servers_sharing_room_with,
            servers_in_room=rooms_area.servers_in_room,
        )
        e2ee.keys.remote = relay.remote_keys
        # Rooms across servers (fedrooms): PDU pipeline, membership handshakes, reads.
        hs.federation.attach_rooms(rooms_area.rooms, rooms_area.memberships, rooms_area.reader)
        # The room directory over federation (/publicRooms both ways).
        hs.federation.attach_directory(rooms_area.directory, rooms_area.aliases)
        await hs.federation.start()
        return hs

    def client_app(self) -> web.Application:
        app = web.Application(
            middlewares=[cors_middleware, error_middleware],
            client_max_size=self.config.limits.max_upload_bytes,
        )
        app["max_json_body_bytes"] = self.config.limits.max_json_body_bytes
        ud = self.userdata
        apis: list[Any] = [
            self._openid(),
            DiscoveryApi(self.config, self.auth, self.unstable_features),
            AccountApi(self.accounts, self.auth, self.uia, self.limiter),
            DevicesApi(self.accounts, self.auth, self.uia),
            WhoisApi(self.accounts, self.auth),
            ProfileApi(self.accounts, self.auth),
            AdminRegisterApi(self.accounts, self.limiter),
            EphemeralApi(self.typing, self.receipts, self.auth),
            AccountDataApi(ud.account_data, self.auth),
            FilterApi(ud.filters, self.auth),
            PushRulesApi(ud.push, self.auth),
            PresenceApi(ud.presence, self.auth),
            *self.e2ee.apis(self.accounts, self.auth, self.uia),
            *self.rooms_area.apis(self.auth),
            *self.sync_area.apis(self.auth),
        ]
        for api in apis:
            app.add_routes(api.routes())
        if self.federation is not None:
            app.add_routes(self.federation.client_routes())
        notifier = self.rooms_area.notifier

        async def end_long_polls(_: web.Application) -> None:
            notifier.close()  # /sync long-polls answer now instead of holding up shutdown

        app.on_shutdown.append(end_long_polls)
        return app

    def federation_app(self) -> web.Application:
        app = web.Application(
            middlewares=[error_middleware],
            client_max_size=self.config.limits.max_json_body_bytes,
        )
        app["max_json_body_bytes"] = self.config.limits.max_json_body_bytes
        if self.federation is not None:
            self.federation.install(app)
            app.add_routes(self._openid().userinfo_routes())
        return app

    def _openid(self) -> OpenIdApi:
        if self.openid is None:
            tokens = OpenIdTokens(self.db, self.clock, self.config.server_name)
            self.openid = OpenIdApi(self.auth, tokens)
        return self.openid

    async def close(self) -> None:
        self.typing.close()
        await self.sync_area.aclose()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.federation is not None:
            await self.federation.close()
        await self.db.close()


@dataclass
class RunningServer:
    """A started server with its listeners; ``stop`` shuts everything down cleanly."""

    hs: HomeServer
    runners: list[web.AppRunner]
    client_port: int
    federation_port: int

    @property
    def client_url(self) -> str:
        return f"http://{self.hs.config.client_listener.bind}:{self.client_port}"

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        await self.hs.close()


async def _listen(
    app: web.Application, host: str, port: int, ssl_ctx: Any = None
) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S, handle_signals=False
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_ctx, reuse_address=True)
    await site.start()
    bound = port
    server = site._server
    if server is not None and port == 0:
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            bound = sockets[0].getsockname()[1]
    return runner, bound


async def start(config: Config) -> RunningServer:
    """Build the server and open the client and federation listeners."""
    hs = await HomeServer.build(config)
    runners: list[web.AppRunner] = []
    try:
        cl = config.client_listener
        client_runner, client_port = await _listen(hs.client_app(), cl.bind, cl.port)
        runners.append(client_runner)
        fed_port = 0
        if config.federation.enabled:
            fl = config.federation_listener
            ssl_ctx = server_ssl_context(config.tls_certificate_path, config.tls_private_key_path)
            fed_runner, fed_port = await _listen(hs.federation_app(), fl.bind, fl.port, ssl_ctx)
            runners.append(fed_runner)
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        await hs.close()
        raise
    return RunningServer(hs, runners, client_port, fed_port)
