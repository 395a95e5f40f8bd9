"""Peeking (MSC2753, unstable): ``POST /peek/{roomIdOrAlias}`` starts following a
world_readable room without joining it, ``POST /rooms/{roomId}/unpeek`` stops; the
device's /sync then carries the room under ``rooms.peek`` (timeline and state as for
a joined room, read with the visibility rules of a non-member). Local rooms only:
peeking over federation is not implemented.

Peeks belong to a device (MSC2753: "only the device which peeked"). A peek of a
room the user then joins is left in place but not shown: the room is under
``join``.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.errors import forbidden
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.visibility import Visibility
from homeserver.storage.database import Database
from homeserver.sync.notifier import Notifier


@dataclass(frozen=True, slots=True)
class Peek:
    room_nid: int
    # Events position of the first sync answer that carried the room; None: not yet.
    delivered_at: int | None

    def is_new(self, since: int | None) -> bool:
        """Whether a sync from ``since`` gets the room's history (as newly joined)."""
        return since is None or self.delivered_at is None or since < self.delivered_at


class PeekStore:
    """Table ``room_peeks``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, user_id: str, device_id: str, room_nid: int) -> None:
        await self.db.execute(
            "INSERT INTO room_peeks (user_id, device_id, room_nid)"
            " VALUES ($1, $2, $3) ON CONFLICT (user_id, device_id, room_nid) DO NOTHING",
            user_id,
            device_id,
            room_nid,
        )

    async def delivered(
        self, user_id: str, device_id: str, room_nids: list[int], position: int
    ) -> None:
        """A sync answer up to ``position`` carried these newly peeked rooms."""
        await self.db.executemany(
            "UPDATE room_peeks SET delivered_at = $1 WHERE user_id = $2 AND device_id = $3"
            " AND room_nid = $4 AND delivered_at IS NULL",
            [(position, user_id, device_id, n) for n in room_nids],
        )

    async def remove(self, user_id: str, device_id: str, room_nid: int) -> None:
        await self.db.execute(
            "DELETE FROM room_peeks WHERE user_id = $1 AND device_id = $2 AND room_nid = $3",
            user_id,
            device_id,
            room_nid,
        )

    async def for_device(self, user_id: str, device_id: str) -> list[Peek]:
        rows = await self.db.fetchall(
            "SELECT room_nid, delivered_at FROM room_peeks"
            " WHERE user_id = $1 AND device_id = $2 ORDER BY room_nid",
            user_id,
            device_id,
        )
        return [Peek(int(r[0]), None if r[1] is None else int(r[1])) for r in rows]


class PeekService:
    def __init__(
        self,
        store: PeekStore,
        memberships: MembershipService,
        visibility: Visibility,
        notifier: Notifier,
    ) -> None:
        self.store = store
        self.memberships = memberships
        self.visibility = visibility
        self.notifier = notifier

    async def peek(self, user_id: str, device_id: str, room_id_or_alias: str) -> str:
        """Start peeking; 403 M_FORBIDDEN unless the room's history is world_readable."""
        room = await self.memberships.resolve_room(room_id_or_alias)
        if not await self.visibility.world_readable(room):
            raise forbidden("Only rooms whose history is world_readable can be peeked into")
        await self.store.add(user_id, device_id, room.room_nid)
        self.notifier.notify([user_id])
        return room.room_id

    async def unpeek(self, user_id: str, device_id: str, room_id: str) -> None:
        room = await self.memberships.resolve_room(room_id)
        await self.store.remove(user_id, device_id, room.room_nid)
