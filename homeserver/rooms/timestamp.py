"""Jump to date: the event of a room nearest a timestamp (client-server
"GET /rooms/{roomId}/timestamp_to_event", server-server "GET /timestamp_to_event").

This server answers from the events it holds when it holds the room's whole
history (its ``m.room.create`` is in its timeline). A room joined late over
federation lacks history before the join, and what backfill brought has
gaps, so then the other servers in the room are asked first (``remote``,
bound by the composition root; None without federation), first to answer
wins, and the local answer is the fallback.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.visibility import Visibility

# (servers to ask, room id, ts, dir) -> {"event_id", "origin_server_ts"} or None.
RemoteTimestamp = Callable[[list[str], str, int, str], Awaitable[dict[str, Any] | None]]
MAX_SERVERS_ASKED = 5
MAX_TS = 2**53


def parse_query(ts: str | None, direction: str | None) -> tuple[int, str]:
    if ts is None or direction is None:
        raise MatrixError(400, "M_MISSING_PARAM", "ts and dir are required")
    if not ts.isdigit() or int(ts) > MAX_TS:
        raise invalid_param("ts must be a timestamp in milliseconds")
    if direction not in ("f", "b"):
        raise invalid_param("dir must be f or b")
    return int(ts), direction


class TimestampLookup:
    def __init__(self, rooms: RoomService, visibility: Visibility) -> None:
        self.rooms = rooms
        self.visibility = visibility
        self.remote: RemoteTimestamp | None = None

    async def _local(self, room: RoomInfo, ts: int, direction: str) -> dict[str, Any] | None:
        found = await self.rooms.events.event_near_ts(room.room_nid, ts, direction == "f")
        if found is None:
            return None
        return {"event_id": found[0], "origin_server_ts": found[1]}

    async def _whole_history(self, room: RoomInfo) -> bool:
        """Whether this server's timeline of the room starts at its creation."""
        create = await self.rooms.current_state_event(room, "m.room.create")
        return create is not None and create.stream_ordering is not None

    async def for_user(self, user_id: str, room_id: str, ts: int, direction: str) -> dict[str, Any]:
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise forbidden("You are not in this room")
        member = await self.rooms.members.get(room.room_nid, user_id)
        joined = member is not None and member.membership == "join"
        if not joined and not await self.visibility.world_readable(room):
            raise forbidden("You are not in this room")
        found = None
        if self.remote is not None and not await self._whole_history(room):
            servers = sorted(await self.rooms.members.joined_servers(room.room_nid))
            others = [s for s in servers if s != self.rooms.server_name]
            found = await self.remote(others[:MAX_SERVERS_ASKED], room_id, ts, direction)
        if found is None:
            found = await self._local(room, ts, direction)
        if found is None:
            way = "forward" if direction == "f" else "backward"
            raise not_found(f"No event found from {ts} in the {way} direction")
        return found

    async def for_server(
        self, origin: str, room_id: str, ts: int, direction: str
    ) -> dict[str, Any]:
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        in_room = origin in await self.rooms.members.joined_servers(room.room_nid)
        if not in_room and not await self.visibility.world_readable(room):
            raise forbidden("The server is not in this room")
        found = await self._local(room, ts, direction)
        if found is None:
            raise not_found("No event found")
        return found
