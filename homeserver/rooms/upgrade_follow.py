"""This server's own listings follow a room through an upgrade made elsewhere.

The server that upgrades a room moves its local aliases and its directory
listing to the successor itself (``upgrade``). Every other server learns of
the upgrade when one of its users joins the successor (spec "Room Upgrades":
clients follow the tombstone): then its local aliases of the predecessor
name the successor, and a predecessor listed in its public room directory
gives its place to the successor, once the old room's tombstone names it
too. The spec leaves this to the servers; Synapse does it on the first join,
and users expect an alias of theirs to keep leading to the live room. For a
room upgraded here it is a no-op (the upgrade already moved everything).
"""

from __future__ import annotations

from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo

MEMBER = "m.room.member"
CREATE = "m.room.create"
TOMBSTONE = "m.room.tombstone"


class UpgradeFollow:
    def __init__(self, rooms: RoomService) -> None:
        self.rooms = rooms

    async def on_event(self, stored: StoredEvent, room: RoomInfo) -> None:
        """Event hook: a local user's join of a room that names a predecessor, or
        a predecessor's tombstone arriving after such a join."""
        ev = stored.event
        if ev.type == TOMBSTONE and ev.state_key == "":
            new_id = ev.content.get("replacement_room")
            new = await self.rooms.rooms.get_room(new_id) if isinstance(new_id, str) else None
            if new is not None:
                await self._follow(room, new)
            return
        if ev.type != MEMBER or ev.membership != "join" or ev.state_key is None:
            return
        if not ev.state_key.endswith(":" + self.rooms.server_name):
            return
        create = await self.rooms.current_state_event(room, CREATE)
        predecessor = None if create is None else create.event.content.get("predecessor")
        old_id = predecessor.get("room_id") if isinstance(predecessor, dict) else None
        old = await self.rooms.rooms.get_room(old_id) if isinstance(old_id, str) else None
        if old is not None:
            await self._follow(old, room)

    async def _follow(self, old: RoomInfo, new: RoomInfo) -> None:
        """Only when both rooms agree: the successor names the old room as its
        predecessor, and the old room's tombstone (sent with the power to do so)
        names the successor. A room merely claiming a predecessor moves nothing."""
        if old.room_id == new.room_id:
            return
        tomb = await self.rooms.current_state_event(old, TOMBSTONE)
        if tomb is None or tomb.event.content.get("replacement_room") != new.room_id:
            return
        create = await self.rooms.current_state_event(new, CREATE)
        predecessor = None if create is None else create.event.content.get("predecessor")
        if not isinstance(predecessor, dict) or predecessor.get("room_id") != old.room_id:
            return
        store = self.rooms.rooms
        await store.move_aliases(old.room_nid, new.room_nid)
        if await store.is_public(old.room_nid):
            await store.set_public(new.room_nid, True)
            await store.set_public(old.room_nid, False)
