"""Which local users are joined, invited or knocking in a room, remembered per room.

Every event sent into a room wakes its local members' /sync (``RoomService.after_persist``),
and typing and receipts do the same; reading the member list each time costs one row per
member, so send latency grew with the room. Memberships change far less often than
events are sent, so the list is kept here and dropped when a membership changes.

Design note
-----------
``room_memberships`` is written only by ``MembershipStore.set_membership``, inside the
event persister's transaction, and deleted by a purge. Invalidation has three parts:

- ``set_membership`` calls ``drop`` *before* the commit, and the persister calls it again
  *after* the commit (or the rollback); a ``generation`` counter per room makes a read
  that raced with the write unable to store what it read: ``load`` notes the generation
  before its query and stores the answer only if no ``drop`` happened meanwhile.
- Other processes over the same PostgreSQL hear of the change through ``publish`` (the
  signal bus, topic ``LOCAL_MEMBERS_CACHE``, keys are room nids), and drop their copy.
- After a bus reconnect (messages may have been lost) ``drop_cached(None)`` empties it.

The number of rooms kept is bounded (least recently used go first).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Final

# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are room nids.
LOCAL_MEMBERS_CACHE: Final = "local_members"
DEFAULT_MAX_ROOMS: Final = 4096


class LocalMembersCache:
    def __init__(self, max_rooms: int = DEFAULT_MAX_ROOMS) -> None:
        self.max_rooms = max_rooms
        self._users: OrderedDict[int, tuple[str, ...]] = OrderedDict()
        # Bumped by every drop; a room absent here is at generation 0. Dropping everything
        # bumps ``_epoch`` instead, which every stored answer also checks.
        self._generation: dict[int, int] = {}
        self._epoch = 0
        # Other processes are told through this (None: one process).
        self.publish: Callable[[str, list[str]], None] | None = None

    async def get(self, room_nid: int, read: Callable[[], Awaitable[list[str]]]) -> list[str]:
        """The cached list, or ``read()``'s answer (stored unless a drop raced with it)."""
        cached = self._users.get(room_nid)
        if cached is not None:
            self._users.move_to_end(room_nid)
            return list(cached)
        generation = self._generation.get(room_nid, 0)
        epoch = self._epoch
        users = await read()
        if self._generation.get(room_nid, 0) == generation and self._epoch == epoch:
            self._users[room_nid] = tuple(users)
            while len(self._users) > self.max_rooms:
                self._users.popitem(last=False)
        return users

    def drop(self, room_nids: Iterable[int]) -> None:
        """Forget these rooms' lists in this process only."""
        for nid in room_nids:
            self._users.pop(nid, None)
            self._generation[nid] = self._generation.get(nid, 0) + 1
        if len(self._generation) > 4 * self.max_rooms:
            # Old counters only matter to reads in flight: start a new epoch instead.
            self.drop_cached(None)

    def changed(self, room_nids: Iterable[int]) -> None:
        """Memberships of these rooms were committed (or rolled back): forget them here
        and in every other process."""
        nids = list(room_nids)
        self.drop(nids)
        if self.publish is not None and nids:
            self.publish(LOCAL_MEMBERS_CACHE, [str(n) for n in nids])

    def drop_cached(self, keys: list[str] | None) -> None:
        """The bus's handler: these room nids changed elsewhere (None: anything may have)."""
        if keys is None:
            self._users.clear()
            self._generation.clear()
            self._epoch += 1
            return
        nids = []
        for key in keys:
            try:
                nids.append(int(key))
            except ValueError:
                continue
        self.drop(nids)
