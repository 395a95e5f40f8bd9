"""Composition root: builds storage, services and HTTP routes, and runs the listeners.

This is the only module that wires areas together: services expose hooks
(device deleted, profile changed, event persisted, ...) and this module
connects them, so no service reaches for another through a global.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from federation import Federation  # the only place homeserver meets federation/
from federation.partial_state_store import PARTIAL_STATE_MARKED
from federation.pdu.acl_cache import SERVER_ACL_CACHE
from federation.sender import FederationSender
from homeserver.accounts.auth import SESSIONS_CACHE, USER_SESSIONS_CACHE, Authenticator
from homeserver.accounts.client_ips import ClientIpRetention
from homeserver.accounts.login_tokens import LoginTokens
from homeserver.accounts.openid import OpenIdTokens
from homeserver.accounts.passwords import PasswordHashing
from homeserver.accounts.service import AccountService
from homeserver.accounts.store import AccountStore
from homeserver.accounts.threepids import ThreepidService
from homeserver.accounts.threepids_store import ThreepidStore
from homeserver.accounts.uia import UiaService
from homeserver.api.admin.area import AdminArea
from homeserver.api.assembly import client_apis, federation_listener_routes
from homeserver.appservices.service import AppServices
from homeserver.appservices.wiring import build_app_services, read_registrations
from homeserver.clock import Clock
from homeserver.config import Config, ConfigError
from homeserver.e2ee.wiring import UNSTABLE_FEATURES as E2EE_FEATURES
from homeserver.e2ee.wiring import E2ee, build_e2ee
from homeserver.errors import not_found
from homeserver.events.keys import SigningKey, read_signing_keys
from homeserver.http.bodies import MAX_JSON_BODY_BYTES
from homeserver.http.observe import health_routes, metrics_app, observe_middleware
from homeserver.http.shell import cors_middleware, error_middleware
from homeserver.identity.bindings import BindingService
from homeserver.identity.bindings_store import BindingStore
from homeserver.logs import new_request_id, request_id
from homeserver.mail.sender import Mailer
from homeserver.media.service import MediaService
from homeserver.media.store import MediaStore
from homeserver.process_roles import (
    CLIENT,
    FEDERATION_INBOUND,
    MAIN,
    SYNC,
    client_processes,
    roles_of,
)
from homeserver.push.evaluation import PUSH_EVALUATE, PUSH_EVALUATED
from homeserver.push.service import PUSH_RULES_CACHE, PushRuleService
from homeserver.push.wiring import attach_email_pushes, build_push_rules
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.content_policy import ContentPolicy
from homeserver.rooms.ephemeral.receipts import ReceiptService
from homeserver.rooms.ephemeral.receipts_store import ReceiptStore
from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.rooms.store.events_store import EVENTS_CACHE, StoredEvent
from homeserver.rooms.store.local_members_cache import LOCAL_MEMBERS_CACHE
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.store.state_store import CURRENT_STATE_CACHE, STATE_GROUPS_CACHE
from homeserver.rooms.upgrade_follow import UpgradeFollow
from homeserver.rooms.user_directory import backfill as user_directory_backfill
from homeserver.rooms.wiring import RoomsArea, build_rooms_area
from homeserver.storage.database import Database, connect, sqlite_path
from homeserver.storage.migrate import migrate
from homeserver.storage.process_lock import ProcessLock, acquire_process_lock
from homeserver.streams.signal import SignalFanout
from homeserver.sync.notifier import Notifier
from homeserver.sync.sliding import SLIDING_SYNC_FEATURE
from homeserver.sync.wiring import SyncArea, wire_sync
from homeserver.tls import server_ssl_context
from homeserver.userdata.room_upgrades import UpgradeCarryOver
from homeserver.userdata.services import UserDataServices

if TYPE_CHECKING:
    from homeserver.media.preview import UrlPreviewer
    from homeserver.metrics import Metrics
    from homeserver.streams.pg_bus import PgSignalBus

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
    app_services: AppServices
    threepids: ThreepidService
    bindings: BindingService
    login_tokens: LoginTokens
    client_ips: ClientIpRetention
    # This server's own registry (several servers may share one test process); None
    # while the metrics listener is off: nothing counts what nobody can scrape, and
    # prometheus_client (~1 MiB) is never loaded (benchmarks/README.md, tidy4).
    metrics: Metrics | None = None
    previewer: UrlPreviewer | None = None
    federation: Federation | None = None
    unstable_features: dict[str, bool] = field(default_factory=dict)
    background: list[asyncio.Task[Any]] = field(default_factory=list)
    process_lock: ProcessLock | None = None
    # Wake-ups and cache invalidation shared with other processes (PostgreSQL only).
    signal_bus: PgSignalBus | None = None
    # Set when another process took the database lock (PostgreSQL): `run` stops.
    lock_lost: asyncio.Event = field(default_factory=asyncio.Event)
    # Run at close after federation stopped, before the database closes (leases).
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    @classmethod
    async def build(
        cls, config: Config, exclusive: bool = True, cross_process: bool = False
    ) -> HomeServer:
        """``exclusive``: take the database's process lock first (every serving
        process; ``register-user`` only adds a row and does not). ``cross_process``:
        share wake-ups and cache invalidation with other processes on the same
        PostgreSQL database (``connect_signal_bus``)."""
        if cross_process and sqlite_path(config.database_url) is not None:
            raise ConfigError("several processes need PostgreSQL: SQLite serves one process only")
        signing_key = _load_signing_key(config.signing_key_path)
        registrations = read_registrations(config)
        # Operator modules load first: a broken one is a config error before any I/O.
        content_policy = ContentPolicy.from_config(config.content_policy)
        lock = await acquire_process_lock(config.database_url) if exclusive else None
        try:
            db = await connect(
                config.database_url, config.database.sqlite_synchronous, config.database.pool_size
            )
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
        auth = Authenticator(store, clock, store_client_ips=config.privacy.store_client_ips)
        accounts = AccountService(
            config, store, auth, clock, PasswordHashing(config.password_hashing)
        )
        # Room events wake /sync through the notifier; the room service sees only the
        # ChangeSignal interface (a cross-process signal plugs in here later).
        notifier = Notifier()
        # Application-service senders listen to the same signal (added below).
        signal = SignalFanout([notifier])
        rooms_area = build_rooms_area(
            config, db, clock, signing_key, accounts, signal, content_policy
        )
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
        # So do this server's aliases and directory listing of a room upgraded elsewhere.
        rooms_area.rooms.event_persisted_hooks.append(UpgradeFollow(rooms_area.rooms).on_event)

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
        app_services = build_app_services(
            config,
            registrations,
            db,
            accounts,
            rooms_area,
            typing,
            receipts,
            e2ee.to_device,
            userdata.presence,
        )
        signal.targets.append(app_services)
        threepid_store = ThreepidStore(db)
        threepids = ThreepidService(config, threepid_store, Mailer(config.email), clock)

        async def drop_threepids(user_id: str) -> None:
            # Spec (deactivation): the account's third-party ids go with it.
            user = await store.get_user(user_id)
            if user is not None:
                await threepid_store.remove_all(user.user_nid)

        accounts.deactivated_hooks.append(drop_threepids)
        hs = cls(
            config=config,
            metrics=_metrics_if_enabled(config),
            db=db,
            clock=clock,
            signing_key=signing_key,
            # The processes serving clients split every limit between them (ratelimit.py).
            limiter=RateLimiter(
                config.rate_limits,
                processes=client_processes(
                    config.main_roles, {n: w.roles for n, w in config.workers.items()}
                ),
            ),
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
            admin=AdminArea.build(config, db, clock, accounts, rooms_area, threepids),
            openid=OpenIdTokens(db, clock, config.server_name),
            app_services=app_services,
            threepids=threepids,
            bindings=BindingService(rooms_area.third_party.identity, BindingStore(db)),
            login_tokens=LoginTokens(config.login_via_existing_session, threepid_store, clock),
            client_ips=ClientIpRetention(store, clock, config.privacy),
            unstable_features={**E2EE_FEATURES, SLIDING_SYNC_FEATURE: True},
            process_lock=lock,
        )
        invites = rooms_area.memberships.invite_protection
        if invites is not None:
            invites.limiter = partial(hs.limiter.check, "invites")  # (user, count)
        attach_email_pushes(
            hs.sync_area.pushers, hs.sync_area.notifications, threepids, store, clock, config.email
        )
        if config.media.url_preview_enabled:
            # Imported only here: off by default, and it loads html.parser and its own client.
            from homeserver.media.preview import UrlPreviewer

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
        fed_rooms = hs.federation.attach_rooms(
            rooms_area.rooms, rooms_area.memberships, rooms_area.reader
        )
        # /sync without lazy-loaded members leaves partial-state rooms out until whole.
        hs.sync_area.sync.src.partial_state = fed_rooms.partial.store
        # The room directory (and other servers' aliases), space hierarchies and
        # jump-to-date over federation (both ways).
        hs.federation.attach_directory(
            rooms_area.directory, rooms_area.aliases, rooms_area.hierarchy, rooms_area.timestamps
        )
        hs.federation.attach_third_party_invites(rooms_area.third_party)
        # Media over federation: ours served, remote media fetched into the cache.
        hs.federation.attach_media(hs.media)
        _wire_metrics(hs, relay.sender)
        if cross_process:
            try:
                await hs.connect_signal_bus(main=exclusive)
            except BaseException:
                await hs.close()
                raise
        if exclusive and not cross_process:
            # Only the serving process sends the outbox (register-user beside it must
            # not); among several processes, the sender shards' leases decide (scaleout).
            await hs.federation.start()
        if exclusive:
            if lock is not None:
                hs.background.append(asyncio.create_task(lock.watch(hs.lock_lost.set)))
            # Each service's sender user exists; then its transactions resume where they
            # stopped (a stored, unacknowledged one first).
            await app_services.ensure_senders_registered(clock.now_ms())
            app_services.start()
            # Redo what a crash may have cut short after a commit (guests leaving).
            hs.background.append(asyncio.create_task(rooms_area.reconcile_guests()))
            if not cross_process:
                # Push rules of events a restart left unevaluated, then of every new one
                # (several processes: the background lease's holder evaluates).
                hs.background.append(hs.sync_area.push_evaluator.start())
                # Pushers catch up what a restart left undelivered (several processes:
                # the background lease's holder does, scaleout.BackgroundJobs).
                hs.background.append(asyncio.create_task(hs.sync_area.pushers.delivery.resume()))
            # A history purge a restart cut short says so at its status endpoint.
            await rooms_area.purger.store.fail_interrupted()
        return hs

    async def connect_signal_bus(self, main: bool = True) -> None:
        """Join the PostgreSQL signal bus (``homeserver.streams.pg_bus``): /sync wake-ups
        and the caches that must not outlive a change made by another process (and
        typing, application-service ephemeral events: ``cross_process.py``)."""
        # Imported here: a server of one process (every SQLite one) never loads them.
        from homeserver.cross_process import share_across_processes
        from homeserver.streams.pg_bus import PgSignalBus

        notifier = self.sync_area.notifier
        app_services = self.app_services

        # Application-service senders (main process) also look again when a worker
        # persisted events or queued to-device messages.
        def wake_local(user_ids: list[str]) -> None:
            notifier.wake_local(user_ids)
            app_services.woken_by_other_process(user_ids)

        def wake_everyone() -> None:
            notifier.wake_everyone()
            app_services.woken_by_other_process(None)

        bus = PgSignalBus(self.config.database_url, wake_local, wake_everyone)
        notifier.relay = bus.publish_wake
        self.auth.publish = bus.publish
        bus.subscribe(SESSIONS_CACHE, self.auth.drop_tokens)
        bus.subscribe(USER_SESSIONS_CACHE, self.auth.drop_users)
        events = self.rooms_area.rooms.events
        events.publish = bus.publish
        bus.subscribe(
            EVENTS_CACHE, lambda nids: events.drop_cached(None if nids is None else map(int, nids))
        )
        self.push.publish = bus.publish
        bus.subscribe(PUSH_RULES_CACHE, self.push.drop_cached)
        local_members = self.rooms_area.rooms.members.local_cache
        local_members.publish = bus.publish
        bus.subscribe(LOCAL_MEMBERS_CACHE, local_members.drop_cached)
        if self.federation is not None and self.federation.rooms is not None:
            acls = self.federation.rooms.pipeline.acls
            acls.publish = bus.publish
            bus.subscribe(SERVER_ACL_CACHE, acls.drop_cached)
        # Push evaluation runs on the main process only: positions persisted elsewhere
        # go to it, its cursor comes back (homeserver.push.evaluation).
        evaluator = self.sync_area.push_evaluator
        evaluator.publish = bus.publish
        bus.subscribe(PUSH_EVALUATE, evaluator.on_announced_persisted)
        bus.subscribe(PUSH_EVALUATED, evaluator.on_announced_cursor)
        # Interned state keys and room versions never change once written, so those
        # caches need no message; state groups change in place only when a partial-state
        # join's whole state is merged (federation.membership.partial_state).
        state = self.rooms_area.rooms.state
        state.publish = bus.publish
        bus.subscribe(STATE_GROUPS_CACHE, state.forget_cached)
        state.current_cache.publish = bus.publish
        bus.subscribe(CURRENT_STATE_CACHE, state.current_cache.drop_cached)
        if self.federation is not None and self.federation.rooms is not None:
            # The same signal releases this process's waiters on a partial-state room
            # another process made whole (/members, /joined_members).
            partial = self.federation.rooms.partial
            bus.subscribe(STATE_GROUPS_CACHE, lambda _keys: partial.merged_elsewhere())
            # A rejoin marks a room partial again: every process asks again.
            partial.store.publish = bus.publish
            bus.subscribe(PARTIAL_STATE_MARKED, partial.store.forget_complete)
        shared_typing = share_across_processes(
            bus, self.db, self.typing, self.rooms_area.rooms.rooms, self.app_services, main
        )
        self.signal_bus = bus
        await bus.start()
        await shared_typing.start()

    def start_background(self) -> list[asyncio.Task[Any]]:
        """Long-running upkeep of a serving process (not of CLI one-shots); returns the
        tasks it started (among several processes they stop with the lease)."""
        area = self.rooms_area
        started = [
            asyncio.create_task(_job("media-upkeep", self.media.run_upkeep), name="media-upkeep"),
            asyncio.create_task(self.client_ips.run(), name="client-ip-purge"),
            asyncio.create_task(
                _job(
                    "user-directory-backfill",
                    lambda: _discard(
                        user_directory_backfill(self.db, area.rooms.rooms, area.memberships_store)
                    ),
                ),
                name="user-directory-backfill",
            ),
        ]
        if area.self_destruct is not None:
            started.append(
                asyncio.create_task(
                    _job("self-destruct", area.self_destruct.run), name="self-destruct"
                )
            )
        if self.config.retention.enabled:
            started.append(
                asyncio.create_task(
                    _job("retention", self.rooms_area.retention.run), name="retention"
                )
            )
        self.background.extend(started)
        return started

    def client_app(self) -> web.Application:
        # Media uploads stream from request.content to disk (within
        # limits.max_upload_bytes); nothing reads a whole body bigger than a JSON one.
        app = web.Application(
            middlewares=[
                observe_middleware(self.metrics, "client"),
                cors_middleware,
                error_middleware,
            ],
            client_max_size=self.config.limits.max_json_body_bytes,
        )
        app[MAX_JSON_BODY_BYTES] = self.config.limits.max_json_body_bytes
        app.add_routes(health_routes())
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
            threepids=self.threepids,
            bindings=self.bindings,
            login_tokens=self.login_tokens,
            unstable_features=self.unstable_features,
            app_services=self.app_services,
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
            middlewares=[observe_middleware(self.metrics, "federation"), error_middleware],
            client_max_size=self.config.limits.max_json_body_bytes,
        )
        app[MAX_JSON_BODY_BYTES] = self.config.limits.max_json_body_bytes
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
        await self.app_services.close()
        await self.rooms_area.purger.close()
        if self.federation is not None:
            await self.federation.close()
        for close in self.closers:
            await close()
        if self.previewer is not None:
            await self.previewer.close()
        await self.rooms_area.third_party.identity.close()
        if self.signal_bus is not None:
            await self.signal_bus.close()
        await self.db.close()
        self.accounts.passwords.close()
        if self.process_lock is not None:
            await self.process_lock.release()


async def _discard(result: Awaitable[object]) -> None:
    """Await a job whose result only its own log line reports."""
    await result


async def _job(name: str, run: Callable[[], Awaitable[None]]) -> None:
    """Run a background job under a request id of its own (its log lines say which job)."""
    request_id.set(new_request_id(name))
    await run()


def _metrics_if_enabled(config: Config) -> Metrics | None:
    if not config.metrics.enabled:
        return None
    from homeserver.metrics import Metrics

    return Metrics()


def _wire_metrics(hs: HomeServer, sender: FederationSender) -> None:
    """Connect the counters to the hooks that feed them, and the scrape-time gauges."""
    metrics = hs.metrics
    if metrics is None:
        return
    suffix = ":" + hs.config.server_name

    async def count_event(stored: StoredEvent, _room: RoomInfo) -> None:
        origin = "local" if stored.event.sender.endswith(suffix) else "remote"
        metrics.events_persisted.labels(origin).inc()

    hs.rooms_area.rooms.event_persisted_hooks.append(count_event)
    sender.failure_hooks.append(lambda destination: metrics.send_failures.labels(destination).inc())

    async def refresh_federation() -> None:
        for kind, depth in (await sender.queue_depth()).items():
            metrics.outbox_depth.labels(kind).set(depth)
        metrics.destinations_backing_off.set(sender.backing_off())

    async def refresh_database() -> None:
        stats = hs.db.pool_stats()
        engine = hs.db.engine
        metrics.db_pool_size.labels(engine).set(stats.size)
        metrics.db_pool_in_use.labels(engine).set(stats.in_use)
        metrics.db_pool_max.labels(engine).set(stats.max_size)

    metrics.add_refresher(refresh_federation)
    metrics.add_refresher(refresh_database)


@dataclass
class RunningServer:
    """A started server with its listeners; ``stop`` shuts everything down cleanly."""

    hs: HomeServer
    runners: list[web.AppRunner]
    client_port: int
    federation_port: int
    # 0 when the metrics listener is off (config metrics.enabled).
    metrics_port: int = 0

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
    """Build the server and open the client and federation listeners.

    With ``workers`` in the config this is the main process: it holds the database's
    process lock, sends the federation outbox, runs the background jobs and serves
    federation, and shares wake-ups and caches with the workers over PostgreSQL.
    """
    hs = await HomeServer.build(config, cross_process=bool(config.workers))
    runners: list[web.AppRunner] = []
    try:
        if hs.signal_bus is not None:
            # Here: scaleout (leases, shared jobs) loads only when there are workers.
            from homeserver.scaleout import join_processes

            await join_processes(hs, MAIN)
        else:
            hs.start_background()
        cl = config.client_listener
        client_runner, client_port = await _listen(hs.client_app(), cl.bind, cl.port)
        runners.append(client_runner)
        fed_port = 0
        worker_roles = {name: worker.roles for name, worker in config.workers.items()}
        main_roles = roles_of(MAIN, config.main_roles, worker_roles)
        if config.federation.enabled and FEDERATION_INBOUND in main_roles:
            fl = config.federation_listener
            ssl_ctx = server_ssl_context(config.tls_certificate_path, config.tls_private_key_path)
            fed_runner, fed_port = await _listen(hs.federation_app(), fl.bind, fl.port, ssl_ctx)
            runners.append(fed_runner)
        metrics_port = 0
        if hs.metrics is not None:
            mc = config.metrics
            metrics_runner, metrics_port = await _listen(
                metrics_app(hs.metrics), mc.bind_address, mc.port
            )
            runners.append(metrics_runner)
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        await hs.close()
        raise
    return RunningServer(hs, runners, client_port, fed_port, metrics_port)


async def start_worker(config: Config, name: str) -> RunningServer:
    """A worker process (``myelin run --worker NAME``) beside the main process, over the
    same PostgreSQL database, doing what its roles say (``homeserver.process_roles``):
    the client API on its ``client_port``, the federation listener on its
    ``federation_port``, a sender shard, the background jobs. What it does not do
    itself it announces over the bus to the process that does (``scaleout``)."""
    if sqlite_path(config.database_url) is not None:
        raise ConfigError(
            f"--worker {name}: worker processes need PostgreSQL; this config's database is"
            " SQLite, which one process serves alone"
        )
    worker = config.workers.get(name)
    if worker is None:
        known = ", ".join(sorted(config.workers)) or "none"
        raise ConfigError(f"--worker {name}: no such worker in the config (workers: {known})")
    hs = await HomeServer.build(config, exclusive=False, cross_process=True)
    runners: list[web.AppRunner] = []
    from homeserver.scaleout import join_processes, roles  # workers only

    try:
        await join_processes(hs, name)
        mine = roles(hs, name)
        port = fed_port = 0
        if CLIENT in mine or SYNC in mine:
            runner, port = await _listen(
                hs.client_app(), config.client_listener.bind, worker.client_port
            )
            runners.append(runner)
        if FEDERATION_INBOUND in mine and config.federation.enabled:
            ssl_ctx = server_ssl_context(config.tls_certificate_path, config.tls_private_key_path)
            runner, fed_port = await _listen(
                hs.federation_app(),
                config.federation_listener.bind,
                worker.federation_port,
                ssl_ctx,
            )
            runners.append(runner)
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        await hs.close()
        raise
    return RunningServer(hs, runners, port, fed_port)
