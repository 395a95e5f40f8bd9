"""One process among several over one PostgreSQL database: who sends which part of the
federation outbox, and who runs the background jobs (README "Scaling out").

Design note
-----------
::

    process NAME, roles from the config (homeserver/process_roles.py)
      federation_sender: leases "federation_sender:i/N" for the N sender processes
          home shard (its place among the senders, sorted by name): kept while alive
          the others: taken only when expired (their process died), handed back
          -> FederationSender.owns(destination) = shard_of(destination) lease held
          -> a shard gained: every destination of it with queued rows resumes
      no federation_sender: owns nothing; wakes go to the bus (topic FEDERATION_OUTBOX)
      background: lease "background" (every process with the role competes; the
          holder keeps it while alive) -> start the jobs (push rule evaluation among
          them); lease lost -> cancel them
          push rows: delivered here while the lease is held, else announced on the
          bus (topic PUSH_DELIVERY) for the holder
          device-list resyncs (GET /user/devices): run here while the lease is held,
          else written down (federation_device_list_resyncs) and announced on the
          bus (topic DEVICE_LIST_RESYNC); the holder runs them on the announcement,
          on a bus catch-up, when it gains the lease, and every minute for failed ones

Everything a lease guards is kept in the database until done (outbox rows,
pusher cursors, purge jobs), so a takeover resumes from there: at least once,
never lost. Leases are used only when the config has workers: a single process
(SQLite, or PostgreSQL without workers) holds the database's process lock and
does everything, as before.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

from homeserver import process_roles as pr
from homeserver.leasing import Lease, LeaseKeeper
from homeserver.push.notifications import EventPush
from homeserver.push.pushers_store import PUSHERS_CACHE
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.storage.leases import LeaseStore

if TYPE_CHECKING:
    from homeserver.app import HomeServer
    from homeserver.streams.pg_bus import PgSignalBus

# The bus topic announcing new federation outbox rows (keys: destinations).
FEDERATION_OUTBOX: Final = "federation_outbox"
# The bus topic announcing new push notification rows (keys: user ids).
PUSH_DELIVERY: Final = "push_delivery"
# The bus topic announcing device-list resyncs asked for (keys: user ids).
DEVICE_LIST_RESYNC: Final = "device_list_resync"
BACKGROUND_LEASE: Final = "background"


def sender_lease(shard: int, shards: int) -> str:
    """The lease of one sender shard; the count is part of the name, so processes
    started with different sender lists never share a lease for different shards."""
    return f"federation_sender:{shard}/{shards}"


def roles(hs: HomeServer, name: str) -> frozenset[str]:
    by_name = {n: w.roles for n, w in hs.config.workers.items()}
    return pr.roles_of(name, hs.config.main_roles, by_name)


async def join_processes(hs: HomeServer, name: str) -> None:
    """Wire process ``name`` (``main`` or a worker) for sharing the sender and the
    background jobs with the others, take its leases, and keep them."""
    bus = hs.signal_bus
    assert bus is not None, "several processes share work over the signal bus"
    config = hs.config
    owner = f"{name}.{secrets.token_hex(4)}"  # a restarted process is a new holder
    store = LeaseStore(hs.db)
    ttl = config.worker_lease_ms
    mine = roles(hs, name)
    keepers: list[LeaseKeeper] = []

    federation = hs.federation
    if federation is not None:
        owns: Callable[[str], bool] = lambda _destination: False  # noqa: E731
        by_name = {n: w.roles for n, w in config.workers.items()}
        senders = pr.processes_with(pr.FEDERATION_SENDER, config.main_roles, by_name)
        if name in senders:
            shards = len(senders)
            names = [sender_lease(i, shards) for i in range(shards)]
            home = senders.index(name)
            sending = LeaseKeeper(
                store,
                owner,
                hs.clock,
                ttl,
                [Lease(n, i == home) for i, n in enumerate(names)],
                on_gained=lambda _names: federation.resume_owned(),
            )
            keepers.append(sending)

            def owns(destination: str) -> bool:
                return sending.held(names[pr.shard_of(destination, shards)])

        federation.send_across_processes(bus.publish, bus.subscribe, FEDERATION_OUTBOX, owns)

    partial = _partial_joins(hs)
    if partial is not None:
        # Partial-state resyncs: this process's claims carry its name; after a restart
        # it takes its own up again at once (the background lease's holder takes up
        # those of a process that died, once their claims run out).
        partial.owner = name
        hs.background.append(asyncio.create_task(partial.resume()))

    held: Callable[[], bool] = lambda: False  # noqa: E731
    if pr.BACKGROUND in mine:
        jobs = BackgroundJobs(hs)
        background = LeaseKeeper(
            store,
            owner,
            hs.clock,
            ttl,
            [Lease(BACKGROUND_LEASE, True)],
            on_gained=lambda _names: jobs.start(),
            on_lost=lambda _names: jobs.stop(),
        )
        keepers.append(background)

        def held() -> bool:
            return background.held(BACKGROUND_LEASE)

    _share_push_delivery(hs, bus, held)
    _share_device_list_resyncs(hs, bus, held)
    for keeper in keepers:
        await keeper.tick()
        keeper.start()
        hs.closers.append(keeper.close)


class BackgroundJobs:
    """The jobs of the ``background`` role, started and stopped with its lease."""

    def __init__(self, hs: HomeServer) -> None:
        self.hs = hs
        self.tasks: list[asyncio.Task[Any]] = []

    def start(self) -> None:
        self.stop()
        delivery = self.hs.sync_area.pushers.delivery
        # Push rules of the events the previous holder (or a restart) left unevaluated,
        # then of every new one (homeserver.push.evaluation); pushers catch up what was
        # left undelivered.
        self.tasks = [
            *self.hs.start_background(),
            self.hs.sync_area.push_evaluator.start(),
            asyncio.create_task(delivery.resume()),
        ]
        partial = _partial_joins(self.hs)
        if partial is not None:
            # Partial-state resyncs whose process died: their claims run out.
            self.tasks.append(asyncio.create_task(partial.keep_resuming()))
        lists = _device_lists(self.hs)
        if lists is not None:
            # Resyncs asked for while no process held the lease, then failed ones again.
            self.tasks.append(asyncio.create_task(lists.resync_wanted()))
            self.tasks.append(asyncio.create_task(lists.retry_wanted()))

    def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        self.tasks = []


class _ResyncNeeds(Protocol):
    async def want_resync(self, user_id: str, now: int) -> None: ...


class DeviceListResyncs(Protocol):
    """What scale-out needs of federation's remote device lists
    (``federation.device_lists.RemoteDeviceLists``; the domain may not import it)."""

    hand_off: Callable[[str], Awaitable[None]] | None

    @property
    def store(self) -> _ResyncNeeds: ...

    def resync_soon(self, user_id: str) -> None: ...

    async def resync_wanted(self) -> None: ...

    async def retry_wanted(self) -> None: ...


class PartialResyncs(Protocol):
    """What scale-out needs of federation's partial-state joins
    (``federation.membership.partial_state.PartialStateJoins``)."""

    owner: str

    async def resume(self) -> None: ...

    async def keep_resuming(self) -> None: ...


def _partial_joins(hs: HomeServer) -> PartialResyncs | None:
    rooms = hs.federation.rooms if hs.federation is not None else None
    return rooms.partial if rooms is not None else None


def _device_lists(hs: HomeServer) -> DeviceListResyncs | None:
    relay = hs.federation.relay if hs.federation is not None else None
    return relay.device_lists if relay is not None else None


def _share_device_list_resyncs(hs: HomeServer, bus: PgSignalBus, held: Callable[[], bool]) -> None:
    """Remote device lists are fetched again (GET /user/devices) by one process: the
    background lease's holder. The others write the need down and announce it."""
    lists = _device_lists(hs)
    if lists is None:
        return

    async def hand_off(user_id: str) -> None:
        if held():
            lists.resync_soon(user_id)
            return
        await lists.store.want_resync(user_id, hs.clock.now_ms())
        bus.publish(DEVICE_LIST_RESYNC, [user_id])

    def on_announce(user_ids: list[str] | None) -> None:
        if not held():
            return
        if user_ids is None:  # a catch-up: look at everything asked for
            task = asyncio.get_running_loop().create_task(lists.resync_wanted())
            _keep_task(task)
            return
        for user_id in user_ids:
            lists.resync_soon(user_id)

    lists.hand_off = hand_off
    bus.subscribe(DEVICE_LIST_RESYNC, on_announce)


_tasks: set[asyncio.Task[None]] = set()


def _keep_task(task: asyncio.Task[None]) -> None:
    """Hold a fire-and-forget task until it ends (the loop keeps only weak references)."""
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def _share_push_delivery(hs: HomeServer, bus: PgSignalBus, held: Callable[[], bool]) -> None:
    """Push notifications go out from one process (one sender per pusher cursor): the
    background lease's holder delivers, the others announce the users with new rows."""
    notifications = hs.sync_area.notifications
    pushers = hs.sync_area.pushers
    delivery = pushers.delivery
    notifications.row_hooks.remove(pushers.on_push_rows)

    store = pushers.store
    store.publish = bus.publish

    def on_rows(push: EventPush, stored: StoredEvent) -> None:
        if held():
            pushers.on_push_rows(push, stored)
            return
        known = store.known_users()
        if known is None:
            users = [row.user_id for row in push.notified() if row.notify]
        else:
            users = push.notified_among(known)
        if users:
            bus.publish(PUSH_DELIVERY, users)

    def on_added(user_ids: list[str] | None) -> None:
        # A pusher added elsewhere: known here from now on, and woken in case an event
        # that notifies its user was evaluated before this message came.
        store.added(user_ids)
        on_announce(user_ids)

    def on_announce(user_ids: list[str] | None) -> None:
        if not held():
            return
        job = delivery.resume() if user_ids is None else delivery.wake_users(user_ids)
        task = asyncio.get_running_loop().create_task(job)
        delivery.tasks.add(task)
        task.add_done_callback(delivery.tasks.discard)

    notifications.row_hooks.append(on_rows)
    bus.subscribe(PUSH_DELIVERY, on_announce)
    bus.subscribe(PUSHERS_CACHE, on_added)
