"""Message retention: the server default policy and each room's m.room.retention.

A timer task (``run``) wakes every ``retention.purge_interval_ms`` and, for
each room with a lifetime, purges the history older than it with the same
code as the admin purge_history (``HistoryPurger.purge``, local events
included): state events stay (off the timeline), forward extremities stay,
everything else older than the lifetime is deleted. Clients stop seeing
expired events at once: ``Visibility`` drops them (``expired_before``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from homeserver.clock import Clock
from homeserver.config import RetentionConfig
from homeserver.rooms.purge import HistoryPurger
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.purge_store import all_room_nids
from homeserver.rooms.store.rooms_store import RoomInfo

log = logging.getLogger("myelin.rooms.retention")

RETENTION = "m.room.retention"


def max_lifetime(config: RetentionConfig, room_policy: dict[str, Any] | None) -> int | None:
    """The lifetime (ms) of a room's events: its m.room.retention max_lifetime clamped
    to the allowed bounds, else the server default; None: kept forever."""
    value = None if room_policy is None else room_policy.get("max_lifetime")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return config.default_policy.max_lifetime
    if config.allowed_lifetime_min is not None:
        value = max(value, config.allowed_lifetime_min)
    if config.allowed_lifetime_max is not None:
        value = min(value, config.allowed_lifetime_max)
    return value


class RetentionJob:
    def __init__(
        self, config: RetentionConfig, rooms: RoomService, purger: HistoryPurger, clock: Clock
    ) -> None:
        self.config = config
        self.rooms = rooms
        self.purger = purger
        self.clock = clock

    async def lifetime(self, room: RoomInfo) -> int | None:
        policy = await self.rooms.current_state_event(room, RETENTION)
        return max_lifetime(self.config, None if policy is None else policy.event.content)

    async def expired_before(self, room: RoomInfo) -> int | None:
        """The origin_server_ts before which the room's events have expired, if any
        (what clients are no longer shown, even before a pass deletes them)."""
        if not self.config.enabled:
            return None
        lifetime = await self.lifetime(room)
        return None if lifetime is None else self.clock.now_ms() - lifetime

    async def run_once(self) -> int:
        """One pass over every room; how many events were deleted."""
        now = self.clock.now_ms()
        deleted = 0
        for room_nid in await all_room_nids(self.purger.store.db):
            room = (await self.rooms.rooms.rooms_by_nid([room_nid])).get(room_nid)
            if room is None:
                continue
            lifetime = await self.lifetime(room)
            if lifetime is None:
                continue
            point = await self.purger.store.point_before_ts(room.room_nid, now - lifetime)
            if point is not None:
                deleted += await self.purger.purge(room, point, delete_local=True)
        return deleted

    async def run(self) -> None:
        """Background task: a pass every purge_interval_ms while the server runs."""
        while True:
            await asyncio.sleep(self.config.purge_interval_ms / 1000)
            try:
                deleted = await self.run_once()
                if deleted:
                    log.info("retention purged %d events", deleted)
            except Exception:
                log.exception("retention pass failed")
