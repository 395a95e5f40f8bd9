"""Builds /sync (the builder, the notification service, the legacy /events and
/initialSync views, pushers) over the services it reads, and connects every stream
/sync reads to the notifier; called once by the composition root.

Wake-ups (no polling anywhere): room events wake local members (RoomService
publishes to its ``ChangeSignal``, which the composition root connects to the notifier);
typing and receipt changes wake the room's local members; account data and
to-device wake their user; presence and device-list changes wake the user and
everyone sharing a room with them. Hooks that are synchronous (typing,
receipts, account data, presence) look members up in a task; the tasks are
tracked so shutdown can cancel them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from homeserver.accounts.service import AccountService
from homeserver.clock import Clock
from homeserver.e2ee.wiring import E2ee
from homeserver.lazy import OnFirstUse
from homeserver.push.actions_store import PushActionStore
from homeserver.push.evaluation import PushEvaluator
from homeserver.push.notifications import NotificationService
from homeserver.push.pushers import PusherService
from homeserver.push.service import PushRuleService
from homeserver.push.wiring import build_pushers
from homeserver.rooms.ephemeral.receipts import ReceiptService
from homeserver.rooms.ephemeral.receipts_store import ReceiptRecord
from homeserver.rooms.ephemeral.typing import TypingChange, TypingService
from homeserver.rooms.persist import AfterCommit, PersistPlan
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.wiring import RoomsArea
from homeserver.storage.database import Database, Queries
from homeserver.sync.builder import SyncBuilder
from homeserver.sync.legacy import LegacySync
from homeserver.sync.model import SyncSources
from homeserver.sync.notifier import Notifier
from homeserver.sync.peeks import PeekService, PeekStore
from homeserver.sync.store import SyncStore
from homeserver.userdata.services import UserDataServices

if TYPE_CHECKING:
    from homeserver.sync.sliding.service import SlidingSync

log = logging.getLogger("myelin.sync")
READ_TYPES = ("m.read", "m.read.private")


@dataclass
class SyncArea:
    sync: SyncBuilder
    notifier: Notifier
    notifications: NotificationService
    sliding: OnFirstUse[SlidingSync]  # built by the first sliding sync request
    legacy: LegacySync
    pushers: PusherService
    peeks: PeekService
    push_evaluator: PushEvaluator
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def aclose(self) -> None:
        self.close()
        await self.push_evaluator.stop()
        await self.pushers.close()


def _build_sliding(
    db: Database, rooms_area: RoomsArea, builder: SyncBuilder, clock: Clock
) -> SlidingSync:
    """Sliding sync (~0.5 MiB of modules) loads with the first request that uses it."""
    from homeserver.sync.sliding.wiring import build_sliding

    return build_sliding(db, rooms_area, builder, clock)


def wire_sync(
    db: Database,
    rooms_area: RoomsArea,
    notifier: Notifier,
    typing: TypingService,
    receipts: ReceiptService,
    userdata: UserDataServices,
    push: PushRuleService,
    e2ee: E2ee,
    accounts: AccountService,
    clock: Clock,
    allow_local_push: bool,
) -> SyncArea:
    rooms = rooms_area.rooms
    members = rooms_area.members
    suffix = ":" + rooms.server_name
    notifications = NotificationService(rooms, push, PushActionStore(db), rooms_area.serializer)
    # Push rules are evaluated behind the send, in stream order (push/evaluation.py);
    # readers of counts wait for the evaluator's cursor. On SQLite an ordinary message
    # right after the cursor is evaluated in the send's own transaction (``evaluate_in``).
    evaluator = PushEvaluator(db, rooms.events, notifications)
    notifications.caught_up = evaluator.caught_up
    notifications.settle = evaluator.settle

    async def evaluate_later(
        q: Queries, stored: StoredEvent, plan: PersistPlan
    ) -> AfterCommit | None:
        if plan.outlier and not plan.out_of_band:
            return None  # never in a timeline (a join's state: thousands at once)
        push = await evaluator.evaluate_in(q, stored)
        if push is not None:
            return partial(evaluator.evaluated_in, push=push)

        def on_commit(committed: StoredEvent) -> None:
            # The committed event's position: on PostgreSQL the hook's has none yet.
            position = committed.stream_ordering
            if position is not None and position > 0:
                evaluator.on_persisted(position, committed.event_nid)

        return on_commit

    rooms.persister.txn_hooks.append(evaluate_later)
    sources = SyncSources(
        typing=typing,
        receipts=receipts,
        account_data=userdata.account_data,
        presence=userdata.presence,
        filters=userdata.filters,
        keys=e2ee.keys,
        to_device=e2ee.to_device,
        notifications=notifications,
        users_sharing_room_with=members.users_sharing_room_with,
        peeks=PeekStore(db),
    )
    builder = SyncBuilder(
        rooms, rooms_area.visibility, rooms_area.serializer, notifier, SyncStore(db), sources
    )
    sliding = OnFirstUse(partial(_build_sliding, db, rooms_area, builder, clock))
    legacy = LegacySync(builder, rooms_area.directory, rooms_area.reader)
    pushers = build_pushers(db, clock, rooms, notifications, accounts, allow_local_push)
    peeks = PeekService(PeekStore(db), rooms_area.memberships, rooms_area.visibility, notifier)
    area = SyncArea(builder, notifier, notifications, sliding, legacy, pushers, peeks, evaluator)

    def wake(users: Iterable[str], local: bool = False) -> None:
        """Local users' requests, and peeks into rooms (room ids)."""
        ours = (u for u in users if u.endswith(suffix) or u.startswith("!"))
        if local:
            notifier.wake_local(ours)
        else:
            notifier.notify(ours)

    def wake_later(lookup: Callable[[], Awaitable[Iterable[str]]], local: bool = False) -> None:
        async def run() -> None:
            try:
                wake(await lookup(), local)
            except Exception:
                log.exception("sync wake-up lookup failed")

        task = asyncio.get_running_loop().create_task(run())
        area.tasks.add(task)
        task.add_done_callback(area.tasks.discard)

    # Room ids are woken too: GET /events peeking into a world-readable room listens on
    # the room's id for its events, typing, receipts and its members' presence.
    def on_typing(change: TypingChange) -> None:
        if change.changed:
            room_id = change.room_id
            if change.shared:
                # Every process applies a shared change and wakes its own requests.
                notifier.wake_local([room_id])
                wake_later(lambda: members.local_members(room_id), local=True)
            else:
                notifier.notify([room_id])
                wake_later(lambda: members.local_members(room_id))

    def on_receipt(rec: ReceiptRecord) -> None:
        room_id = rec.room_id
        notifier.notify([room_id])
        wake_later(lambda: members.local_members(room_id))
        if rec.receipt_type in READ_TYPES and rec.user_id.endswith(suffix):
            pushers.on_read(rec.user_id)

    def on_user_data(user_id: str, pos: int) -> None:
        wake([user_id])

    async def presence_audience(user_id: str) -> list[str]:
        return [
            *await members.users_sharing_room_with(user_id),
            *await rooms_area.reader.joined_rooms(user_id),
        ]

    def on_presence(user_id: str, pos: int) -> None:
        wake([user_id])
        wake_later(lambda: presence_audience(user_id))

    async def on_to_device(user_id: str, device_ids: list[str]) -> None:
        wake([user_id])

    async def on_device_list(user_id: str, device_ids: list[str]) -> None:
        wake([user_id, *await members.users_sharing_room_with(user_id)])

    typing.change_hooks.append(on_typing)
    receipts.change_hooks.append(on_receipt)
    userdata.account_data.change_hooks.append(on_user_data)
    userdata.presence.change_hooks.append(on_presence)
    e2ee.to_device.local_hooks.append(on_to_device)
    e2ee.keys.device_list_hooks.append(on_device_list)
    return area
