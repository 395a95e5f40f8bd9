"""Composition root: builds storage, services and HTTP routes, and runs the listeners.

This is the only module that wires areas together: services expose hooks
(device deleted, profile changed, event persisted, ...) and this module
connects them, so no service reaches for another through a global.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.service import AccountService
from homeserver.accounts.store import AccountStore
from homeserver.accounts.uia import UiaService
from homeserver.api.account import AccountApi
from homeserver.api.admin_register import AdminRegisterApi
from homeserver.api.devices import DevicesApi
from homeserver.api.discovery import DiscoveryApi
from homeserver.api.http import cors_middleware, error_middleware
from homeserver.api.profile import ProfileApi
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.events.keys import SigningKey, read_signing_keys
from homeserver.ratelimit import RateLimiter

# --- rooms, events and /sync (issue 3) ---
from homeserver.rooms.wiring import RoomsArea, build_rooms_area
from homeserver.storage.database import Database, connect
from homeserver.storage.migrate import migrate
from homeserver.tls import server_ssl_context

log = logging.getLogger("myelin")

SHUTDOWN_TIMEOUT_S = 10.0


def load_signing_key(path: str) -> SigningKey:
    """The first key of the signing key file (config.signing_key_path)."""
    with open(path, encoding="utf-8") as f:
        keys = read_signing_keys(f.read())
    if not keys:
        raise ValueError(f"no signing key in {path}")
    return keys[0]


@dataclass
class HomeServer:
    """Every long-lived object of one server process, built once at start-up."""

    config: Config
    db: Database
    clock: Clock
    limiter: RateLimiter
    auth: Authenticator
    uia: UiaService
    accounts: AccountService
    signing_key: SigningKey
    rooms_area: RoomsArea
    unstable_features: dict[str, bool] = field(default_factory=dict)
    background: list[asyncio.Task[Any]] = field(default_factory=list)

    @classmethod
    async def build(cls, config: Config) -> HomeServer:
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
        try:
            signing_key = load_signing_key(config.signing_key_path)
        except Exception:
            await db.close()
            raise
        rooms_area = build_rooms_area(config, db, clock, signing_key, accounts)
        return cls(
            config=config,
            db=db,
            clock=clock,
            limiter=RateLimiter(config.rate_limits),
            auth=auth,
            uia=UiaService(db, clock),
            accounts=accounts,
            signing_key=signing_key,
            rooms_area=rooms_area,
        )

    def client_app(self) -> web.Application:
        app = web.Application(
            middlewares=[cors_middleware, error_middleware],
            client_max_size=self.config.limits.max_upload_bytes,
        )
        app["max_json_body_bytes"] = self.config.limits.max_json_body_bytes
        apis: list[Any] = [
            DiscoveryApi(self.config, self.auth, self.unstable_features),
            AccountApi(self.accounts, self.auth, self.uia, self.limiter),
            DevicesApi(self.accounts, self.auth, self.uia),
            ProfileApi(self.accounts, self.auth),
            AdminRegisterApi(self.accounts, self.limiter),
        ]
        apis.extend(self.rooms_area.apis(self.auth))
        for api in apis:
            app.add_routes(api.routes())
        return app

    def federation_app(self) -> web.Application:
        app = web.Application(
            middlewares=[error_middleware],
            client_max_size=self.config.limits.max_json_body_bytes,
        )
        app["max_json_body_bytes"] = self.config.limits.max_json_body_bytes
        return app

    async def close(self) -> None:
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
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
