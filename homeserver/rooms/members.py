"""Who is in which room, for the other areas: typing and receipts ask whether a user
is joined, /sync and e2ee who shares a room with whom, federation which servers are
in a room. Each answer is one or two indexed reads of the membership table.
"""

from __future__ import annotations

from homeserver.rooms.service import RoomService


class RoomMembers:
    def __init__(self, rooms: RoomService) -> None:
        self.rooms = rooms
        self.store = rooms.members

    async def is_joined(self, user_id: str, room_id: str) -> bool:
        """Whether ``user_id`` is joined to ``room_id`` now (for typing and receipts)."""
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            return False
        membership = await self.store.get(room.room_nid, user_id)
        return membership is not None and membership.membership == "join"

    async def event_in_room(self, room_id: str, event_id: str) -> bool:
        """Whether ``event_id`` is a (non-rejected) event of ``room_id``."""
        stored = await self.rooms.events.by_id(event_id)
        return (
            stored is not None
            and stored.rejected_reason is None
            and stored.event.room_id == room_id
        )

    async def local_members(self, room_id: str) -> list[str]:
        """Local users joined, invited or knocking in ``room_id`` (whom to wake)."""
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            return []
        return await self.store.local_users(room.room_nid, self.rooms.server_name)

    async def users_sharing_room_with(self, user_id: str) -> set[str]:
        return await self.store.users_sharing_room_with(user_id)

    async def departed_room_mates(self, user_id: str, since: int, upto: int) -> set[str]:
        """Users who, between event positions ``since`` and ``upto``, stopped sharing any
        room with ``user_id`` (for ``left`` in /keys/changes): they left a room we are in,
        or we left theirs, and no room is shared now."""
        store = self.store
        mine = await store.changed_since(user_id, since, upto)
        rooms_left = [m.room_nid for m in mine if m.membership in ("leave", "ban")]
        rooms_in = [m.room_nid for m in await store.rooms_for_user(user_id)]
        moves = await store.membership_changes(rooms_in + rooms_left, since, upto)
        shared = await store.users_sharing_room_with(user_id)
        left = {m.user_id for m in moves if m.membership in ("leave", "ban")}
        if rooms_left:
            left |= await store.joined_users(rooms_left)
        left -= shared
        left.discard(user_id)
        return left

    async def arrived_room_mates(self, user_id: str, since: int, upto: int) -> set[str]:
        """Users who, between event positions ``since`` and ``upto``, started sharing a
        room with ``user_id`` (for ``changed`` in /keys/changes): they joined one of our
        rooms, or we joined theirs, or they were invited to one of our rooms (clients
        encrypt for invitees too; /sync's ``device_lists`` lists them the same way)."""
        store = self.store
        rooms_in = [m.room_nid for m in await store.rooms_for_user(user_id, ("join",))]
        moves = await store.membership_changes(rooms_in, since, upto)
        arrived = {m.user_id for m in moves if m.membership == "join"}
        invited = {m.user_id for m in moves if m.membership == "invite"}
        mine = await store.changed_since(user_id, since, upto)
        joined_now = [m.room_nid for m in mine if m.membership == "join"]
        if joined_now:
            arrived |= await store.joined_users(joined_now)
        arrived &= await store.users_sharing_room_with(user_id)
        arrived |= invited
        arrived.discard(user_id)
        return arrived

    async def servers_sharing_room_with(self, user_id: str) -> set[str]:
        return await self.store.servers_sharing_room_with(user_id)

    async def servers_in_room(self, room_id: str) -> set[str]:
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            return set()
        return await self.store.joined_servers(room.room_nid)
