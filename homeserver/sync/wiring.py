"""Connects every stream /sync reads to the notifier, and builds the notification
service; called once by the composition root.

Wake-ups (no polling anywhere): room events wake local members (RoomService);
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
from typing import Any

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.service import AccountService
from homeserver.api.notifications import NotificationsApi
from homeserver.api.pushers import PushersApi
from homeserver.clock import Clock
from homeserver.e2ee.wiring import E2ee
from homeserver.push.actions_store import PushActionStore
from homeserver.push.notifications import NotificationService
from homeserver.push.pushers import PusherService
from homeserver.push.pushers_store import PusherStore
from homeserver.rooms.ephemeral.receipts import ReceiptService
from homeserver.rooms.ephemeral.receipts_store import ReceiptRecord
from homeserver.rooms.ephemeral.typing import TypingChange, TypingService
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.wiring import RoomsArea
from homeserver.storage.database import Database
from homeserver.sync.model import SyncSources
from homeserver.userdata.services import UserDataServices

log = logging.getLogger("myelin.sync")
READ_TYPES = ("m.read", "m.read.private")


@dataclass
class SyncArea:
    notifications: NotificationService
    pushers: PusherService
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def apis(self, auth: Authenticator) -> list[Any]:
        return [NotificationsApi(auth, self.notifications), PushersApi(auth, self.pushers)]

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()

    async def aclose(self) -> None:
        self.close()
        await self.pushers.close()


def wire_pushers(
    db: Database,
    clock: Clock,
    rooms_area: RoomsArea,
    notifications: NotificationService,
    accounts: AccountService,
    allow_local: bool,
) -> PusherService:
    """Pushers get every notification row, and a badge update on read receipts."""
    rooms = rooms_area.rooms

    async def badge(user_id: str) -> int:
        joined = await rooms.members.rooms_for_user(user_id, ("join",))
        infos = await rooms.rooms.rooms_by_nid(m.room_nid for m in joined)
        counts = await notifications.unread_counts(user_id, list(infos.values()), False)
        return sum(c.main.notifications for c in counts.values())

    async def room_name(room: RoomInfo, sender: str) -> dict[str, str]:
        keys = [("m.room.name", ""), ("m.room.canonical_alias", ""), ("m.room.member", sender)]
        state = await rooms.current_state(room, keys)
        out: dict[str, str] = {}
        name = state.get(("m.room.name", ""))
        alias = state.get(("m.room.canonical_alias", ""))
        member = state.get(("m.room.member", sender))
        if name is not None and isinstance(name.event.content.get("name"), str):
            out["room_name"] = name.event.content["name"]
        elif alias is not None and isinstance(alias.event.content.get("alias"), str):
            out["room_name"] = alias.event.content["alias"]
        if member is not None and isinstance(member.event.content.get("displayname"), str):
            out["sender_display_name"] = member.event.content["displayname"]
        return out

    pushers = PusherService(PusherStore(db), clock, allow_local, badge)
    pushers.room_name = room_name
    notifications.row_hooks.append(pushers.on_push_rows)
    accounts.devices_deleted_hooks.append(pushers.on_devices_deleted)
    accounts.deactivated_hooks.append(pushers.on_deactivated)
    return pushers


def wire_sync(
    db: Database,
    rooms_area: RoomsArea,
    typing: TypingService,
    receipts: ReceiptService,
    userdata: UserDataServices,
    e2ee: E2ee,
    accounts: AccountService,
    clock: Clock,
    allow_local_push: bool,
) -> SyncArea:
    rooms = rooms_area.rooms
    notifier = rooms_area.notifier
    suffix = ":" + rooms.server_name
    notifications = NotificationService(
        rooms, userdata.push, PushActionStore(db), rooms_area.serializer
    )
    rooms.pre_notify_hooks.append(notifications.on_event_persisted)
    pushers = wire_pushers(db, clock, rooms_area, notifications, accounts, allow_local_push)
    area = SyncArea(notifications, pushers)
    rooms_area.sync.attach(
        SyncSources(
            typing=typing,
            receipts=receipts,
            account_data=userdata.account_data,
            presence=userdata.presence,
            filters=userdata.filters,
            keys=e2ee.keys,
            to_device=e2ee.to_device,
            notifications=notifications,
            users_sharing_room_with=rooms_area.users_sharing_room_with,
        )
    )

    def wake(users: Iterable[str]) -> None:
        notifier.notify(u for u in users if u.endswith(suffix))

    def wake_later(lookup: Callable[[], Awaitable[Iterable[str]]]) -> None:
        async def run() -> None:
            try:
                wake(await lookup())
            except Exception:
                log.exception("sync wake-up lookup failed")

        task = asyncio.get_running_loop().create_task(run())
        area.tasks.add(task)
        task.add_done_callback(area.tasks.discard)

    def on_typing(change: TypingChange) -> None:
        if change.changed:
            room_id = change.room_id
            wake_later(lambda: rooms_area.local_members(room_id))

    def on_receipt(rec: ReceiptRecord) -> None:
        room_id = rec.room_id
        wake_later(lambda: rooms_area.local_members(room_id))
        if rec.receipt_type in READ_TYPES and rec.user_id.endswith(suffix):
            pushers.on_read(rec.user_id)

    def on_user_data(user_id: str, pos: int) -> None:
        wake([user_id])

    def on_presence(user_id: str, pos: int) -> None:
        wake([user_id])
        wake_later(lambda: rooms_area.users_sharing_room_with(user_id))

    async def on_to_device(user_id: str, device_ids: list[str]) -> None:
        wake([user_id])

    async def on_device_list(user_id: str, device_ids: list[str]) -> None:
        wake([user_id, *await rooms_area.users_sharing_room_with(user_id)])

    typing.change_hooks.append(on_typing)
    receipts.change_hooks.append(on_receipt)
    userdata.account_data.change_hooks.append(on_user_data)
    userdata.presence.change_hooks.append(on_presence)
    e2ee.to_device.local_hooks.append(on_to_device)
    e2ee.keys.device_list_hooks.append(on_device_list)
    return area
