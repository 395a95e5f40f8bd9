"""A user's own settings for a room follow it through an upgrade.

When a local user joins a room whose ``m.room.create`` names a ``predecessor``
(spec "Room Upgrades": the client follows the tombstone), the user's room tags
on the old room are copied to the new one (if it has none yet), and the old
room's entries in the user's ``m.direct`` gain the new room beside them. The
spec leaves this to the server; Synapse does it, and clients expect a direct
chat or a favourite to stay one after an upgrade.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import MatrixError
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.userdata.account_data import TAG_TYPE, AccountDataService

log = logging.getLogger("myelin.userdata.room_upgrades")

DIRECT = "m.direct"
# user id -> the user's numeric id, None for a user this server does not host
UserNid = Callable[[str], Awaitable[int | None]]


class UpgradeCarryOver:
    def __init__(
        self, rooms: RoomService, account_data: AccountDataService, user_nid: UserNid
    ) -> None:
        self.rooms = rooms
        self.account_data = account_data
        self.user_nid = user_nid

    async def on_event(self, stored: StoredEvent, room: RoomInfo) -> None:
        """Event hook: a local user's new join of an upgraded room."""
        ev = stored.event
        if ev.type != "m.room.member" or ev.membership != "join" or ev.state_key is None:
            return
        if not ev.state_key.endswith(":" + self.rooms.server_name):
            return
        if await self._was_joined(stored):
            return  # a profile change, not a join
        create = await self.rooms.current_state_event(room, "m.room.create")
        predecessor = None if create is None else create.event.content.get("predecessor")
        old_room_id = predecessor.get("room_id") if isinstance(predecessor, dict) else None
        if not isinstance(old_room_id, str):
            return
        user_nid = await self.user_nid(ev.state_key)
        if user_nid is None:
            return
        try:
            await self._carry(user_nid, ev.state_key, old_room_id, room.room_id)
        except MatrixError:
            log.exception("could not carry settings over to an upgraded room")

    async def _was_joined(self, stored: StoredEvent) -> bool:
        prev = stored.prev_state_event_nid
        if prev is None:
            return False
        found = (await self.rooms.events.by_nids([prev])).get(prev)
        return found is not None and found.event.membership == "join"

    async def _carry(self, user_nid: int, user_id: str, old: str, new: str) -> None:
        tags = await self.account_data.tags(user_nid, old)
        if tags and not await self.account_data.tags(user_nid, new):
            await self.account_data.put_managed(user_nid, user_id, new, TAG_TYPE, {"tags": tags})
        try:
            direct = await self.account_data.get(user_nid, user_id, None, DIRECT)
        except MatrixError:
            return  # no m.direct
        changed: dict[str, Any] = {}
        for partner, room_ids in direct.items():
            if isinstance(room_ids, list) and old in room_ids and new not in room_ids:
                changed[partner] = [*room_ids, new]
        if changed:
            await self.account_data.put_managed(
                user_nid, user_id, None, DIRECT, {**direct, **changed}
            )
