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
from homeserver.api.admin.area import AdminArea
from homeserver.api.assembly import client_apis, federation_listener_routes
from homeserver.clock import Clock
from homeserver.config import Config, ConfigError
from homeserver.e2ee.wiring import UNSTABLE_FEATURES as E2EE_FEATURES
from homeserver.e2ee.wiring import E2ee, build_e2ee
from homeserver.errors import not_found
from homeserver.events.keys import SigningKey, read_signing_keys
from homeserver.http.shell import cors_middleware, error_middleware
from homeserver.media.preview import UrlPreviewer
from homeserver.media.service import MediaService
from homeserver.media.store import MediaStore
from homeserver.push.service import PushRuleService
from homeserver.push.wiring import build_push_rules
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.ephemeral.receipts import ReceiptService
from homeserver.rooms.ephemeral.receipts_store import ReceiptStore
from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.rooms.wiring import RoomsArea, build_rooms_area
from homeserver.storage.database import Database, connect
from homeserver.storage.migrate import migrate
from homeserver.storage.process_lock import ProcessLock, acquire_process_lock
from homeserver.sync.notifier import Notifier
from homeserver.sync.sliding.service import SLIDING_SYNC_FEATURE
from homeserver.sync.wiring import SyncArea, wire_sync
from homeserver.tls import server_ssl_context
from homeserver.userdata.room_upgrades import UpgradeCarryOver
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
    typing: TypingService
    receipts: ReceiptService
    userdata: UserDataServices
    push: PushRuleService
    e2ee: E2ee
    sync_area: SyncArea
    admin: AdminArea
    media: MediaService
    openid: OpenIdTokens
    previewer: UrlPreviewer | None = None
    federation: Federation | None = None
    unstable_features: dict[str, bool] = field(default_factory=dict)
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    process_lock: ProcessLock | None = None
    # Set when another process took the database lock (PostgreSQL): `run` stops.
    lock_lost: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    async def build(cls, config: Config, exclusive: bool = True) -> HomeServer:
        """``exclusive``: take the database's process lock first (every serving
        process; ``register-user`` only adds a row and does not)."""
        signing_key = _load_signing_key(config.signing_key_path)
        lock = await acquire_process_lock(config.database_url) if exclusive else None
        try:
            db = await connect(config.database_url, config.database.sqlite_synchronous)
        except BaseException:
            if lock is not None:
                await lock.release()
            raise
        try:
            await migrate(db)
        except BaseException:
            await db.close()
            if lock is not None:
                await lock.release()
            raise
        clock = Clock()
        store = AccountStore(db)
        auth = Authenticator(store, clock)
        accounts = AccountService(config, store, auth, clock)
        # Room events wake /sync through the notifier; the room service sees only the
        # ChangeSignal interface (a cross-process signal plugs in here later).
        notifier = Notifier()
        rooms_area = build_rooms_area(config, db, clock, signing_key, accounts, notifier)
        members = rooms_area.members
        userdata = UserDataServices.build(db, clock)
        push = build_push_rules(db, userdata.account_data)

        # Typing, receipts and read markers ask the rooms about membership and events,
        # and write m.fully_read through room account data.
        async def set_room_account_data(
            user_id: str, room_id: str, type: str, content: dict[str, Any]
        ) -> None:
            user = await store.get_user(user_id)
            if user is None:
                raise not_found("Unknown user")
            await userdata.account_data.put_managed(user.user_nid, user_id, room_id, type, content)

        async def user_nid(user_id: str) -> int | None:
            user = await store.get_user(user_id)
            return None if user is None else user.user_nid

        # A user's tags and m.direct entries follow a room through its upgrade.
        carry_over = UpgradeCarryOver(rooms_area.rooms, userdata.account_data, user_nid)
        rooms_area.rooms.event_persisted_hooks.append(carry_over.on_event)

        typing = TypingService(members.is_joined)
        receipts = ReceiptService(
            ReceiptStore(db),
            clock,
            members.is_joined,
            members.event_in_room,
            set_room_account_data,
        )
        e2ee = build_e2ee(
            config,
            db,
            clock,
            accounts,
            users_sharing_room_with=members.users_sharing_room_with,
            departed_room_mates=members.departed_room_mates,
            arrived_room_mates=members.arrived_room_mates,
        )
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
            typing=typing,
            receipts=receipts,
            userdata=userdata,
            push=push,
            e2ee=e2ee,
            # /sync reads every stream; each stream's writer wakes it (sync/wiring.py).
            sync_area=wire_sync(
                db,
                rooms_area,
                notifier,
                typing,
                receipts,
                userdata,
                push,
                e2ee,
                accounts,
                clock,
                # Push gateways on this host only where federation may reach it too (tests).
                allow_local_push=config.federation.insecure_local,
            ),
            media=MediaService(config, MediaStore(db), clock),
            admin=AdminArea.build(config, db, clock, accounts, rooms_area),
            openid=OpenIdTokens(db, clock, config.server_name),
            unstable_features={**E2EE_FEATURES, SLIDING_SYNC_FEATURE: True},
            process_lock=lock,
        )
        if config.media.url_preview_enabled:
            hs.previewer = UrlPreviewer(config.media, hs.media.store_generated)
        hs.federation = Federation.build(config, db, clock, signing_key, accounts)
        relay = hs.federation.connect(
            keys=e2ee.keys,
            to_device=e2ee.to_device,
            typing=typing,
            receipts=receipts,
            presence=userdata.presence,
            is_joined=members.is_joined,
            servers_sharing_room_with=members.servers_sharing_room_with,
            servers_in_room=members.servers_in_room,
        )
        # Late on purpose: the relay needs the keys service (its /user/keys routes,
        # device-list EDUs), and the keys service needs the relay for remote users.
        e2ee.keys.remote = relay.remote_keys
        # Rooms across servers (fedrooms): PDU pipeline, membership handshakes, reads.
        hs.federation.attach_rooms(rooms_area.rooms, rooms_area.memberships, rooms_area.reader)
        # The room directory (and other servers' aliases), space hierarchies and
        # jump-to-date over federation (both ways).
        hs.federation.attach_directory(
            rooms_area.directory, rooms_area.aliases, rooms_area.hierarchy, rooms_area.timestamps
        )
        # Media over federation: ours served, remote media fetched into the cache.
        hs.federation.attach_media(hs.media)
        if exclusive:
            # Only the serving process sends the outbox (register-user beside it must not).
            await hs.federation.start()
            if lock is not None:
                hs.background.append(asyncio.create_task(lock.watch(hs.lock_lost.set)))
            # Redo what a crash may have cut short after a commit (guests leaving).
            hs.background.append(asyncio.create_task(rooms_area.reconcile_guests()))
        return hs

    def start_background(self) -> None:
        """Long-running upkeep of a serving process (not of CLI one-shots)."""
        self.background.append(asyncio.create_task(self.media.run_upkeep(), name="media-upkeep"))

    def client_app(self) -> web.Application:
        # Media uploads stream from request.content to disk (within
        # limits.max_upload_bytes); nothing reads a whole body bigger than a JSON one.
        app = web.Application(
            middlewares=[cors_middleware, error_middleware],
            client_max_size=self.config.limits.max_json_body_bytes,
        )
        app["max_json_body_bytes"] = self.config.limits.max_json_body_bytes
        apis = client_apis(
            config=self.config,
            clock=self.clock,
            auth=self.auth,
            uia=self.uia,
            limiter=self.limiter,
            accounts=self.accounts,
            typing=self.typing,
            receipts=self.receipts,
            userdata=self.userdata,
            push=self.push,
            e2ee=self.e2ee,
            rooms=self.rooms_area,
            sync=self.sync_area,
            media=self.media,
            previewer=self.previewer,
            admin=self.admin,
            openid=self.openid,
            unstable_features=self.unstable_features,
        )
        for api in apis:
            app.add_routes(api.routes())
        if self.federation is not None:
            app.add_routes(self.federation.client_routes())
        notifier = self.sync_area.notifier

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
            app.add_routes(federation_listener_routes(self.auth, self.openid))
        return app

    async def close(self) -> None:
        self.typing.close()
        await self.sync_area.aclose()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.federation is not None:
            await self.federation.close()
        if self.previewer is not None:
            await self.previewer.close()
        await self.db.close()
        if self.process_lock is not None:
            await self.process_lock.release()


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
        hs.start_background()
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
