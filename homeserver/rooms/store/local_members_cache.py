"""Which local users are joined, invited or knocking in a room, remembered per room.

Every event sent into a room wakes its local members' /sync (``RoomService.after_persist``),
and typing and receipts do the same; reading the member list each time costs one row per
member, so send latency grew with the room. Memberships change far less often than
events are sent, so the list is kept here and dropped when a membership changes.

Design note
-----------
``room_memberships`` is written only by ``MembershipStore.set_membership``, inside the
event persister's transaction, and deleted by a purge. ``set_membership`` calls ``drop``
*before* the commit, and the persister calls ``changed`` *after* the commit (or the
rollback). How a read racing with that write is kept out, how other processes hear of
it (topic ``LOCAL_MEMBERS_CACHE``, keys are room nids) and the bound are
``homeserver.rooms.room_cache``'s.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from homeserver.rooms.room_cache import DEFAULT_MAX_ROOMS, RoomCache

# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are room nids.
LOCAL_MEMBERS_CACHE: Final = "local_members"


class LocalMembersCache(RoomCache[Sequence[str]]):
    """Room nid -> its local users joined, invited or knocking (kept as a tuple)."""

    def __init__(self, max_rooms: int = DEFAULT_MAX_ROOMS) -> None:
        super().__init__(LOCAL_MEMBERS_CACHE, max_rooms)

    async def get(self, room_nid: int, read: Callable[[], Awaitable[Sequence[str]]]) -> list[str]:
        """A list of the caller's own: the cached one is never handed out to be changed."""

        async def frozen() -> tuple[str, ...]:
            return tuple(await read())

        return list(await super().get(room_nid, frozen))
