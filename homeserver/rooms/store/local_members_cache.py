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

A join into a big room changed one row, yet dropping the list made the next event read
every local member again: each join cost one row per member, and filling a room of
10,000 grew quadratically. So ``writing`` (called by ``set_membership`` instead of a bare
``drop``) also keeps the list as it was before the transaction's first write and the
memberships it wrote; once the transaction has committed, ``committed`` drops and
publishes as ``changed`` does, then stores the old list with those changes applied,
unless another drop (another writer, a purge, the bus, a read racing a write of an
earlier transaction that has not reported yet) came in between: then the next read
reads, as before. A rollback reports through ``changed``, which forgets the writes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final

from homeserver.rooms.room_cache import DEFAULT_MAX_ROOMS, RoomCache

# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are room nids.
LOCAL_MEMBERS_CACHE: Final = "local_members"
# Memberships a local user is listed for (``MembershipStore.local_users``).
LISTED: Final = frozenset({"join", "invite", "knock"})
# Open transactions' writes kept at most (a transaction that never reports is forgotten).
MAX_WRITES: Final = 1024


@dataclass(slots=True)
class _Writes:
    """One transaction's membership writes into one room, before its commit."""

    before: Sequence[str] | None  # the list before the first write (None: not cached)
    generation: int  # the room's generation after the transaction's last drop
    epoch: int
    changes: dict[str, str] = field(default_factory=dict)  # user id -> new membership


class LocalMembersCache(RoomCache[Sequence[str]]):
    """Room nid -> its local users joined, invited or knocking (kept as a tuple)."""

    def __init__(self, max_rooms: int = DEFAULT_MAX_ROOMS, server_name: str | None = None) -> None:
        super().__init__(LOCAL_MEMBERS_CACHE, max_rooms)
        # Local users end with this; None: lists are never brought up to date, only read.
        self.suffix = None if server_name is None else ":" + server_name
        # (id of the open transaction, room nid) -> what it wrote so far.
        self._writes: dict[tuple[int, int], _Writes] = {}

    def writing(self, txn: object, room_nid: int, user_id: str, membership: str) -> None:
        """Transaction ``txn`` writes ``user_id``'s membership row in the room (before its
        commit): drop the room's list, and note the write for ``committed``."""
        key = (id(txn), room_nid)
        value, generation, epoch = self.peek(room_nid)
        writes = self._writes.get(key)
        self.drop([room_nid])
        if writes is None:
            if len(self._writes) >= MAX_WRITES:
                self._writes.clear()
            writes = self._writes[key] = _Writes(value, 0, epoch)
        elif writes.generation != generation or writes.epoch != epoch:
            writes.before = None  # another drop since this transaction's last one
        _, writes.generation, writes.epoch = self.peek(room_nid)
        writes.changes[user_id] = membership

    def committed(self, txn: object, room_nids: Iterable[int]) -> None:
        """``txn`` committed its membership writes into these rooms: drop them here and
        in other processes (``changed``), and keep the lists brought up to date."""
        nids = list(dict.fromkeys(room_nids))
        current = {}
        for nid in nids:
            writes = self._writes.pop((id(txn), nid), None)
            _, generation, epoch = self.peek(nid)
            if (
                writes is not None
                and writes.before is not None
                and self.suffix is not None
                and (writes.generation, writes.epoch) == (generation, epoch)
            ):
                current[nid] = self._apply(writes.before, writes.changes, self.suffix)
        self.changed(nids)
        for nid, users in current.items():
            _, generation, epoch = self.peek(nid)
            self.put(nid, users, generation, epoch)

    def changed(self, room_nids: Iterable[int], txn: object | None = None) -> None:
        """These rooms changed (committed or rolled back): forget them here and in other
        processes, and ``txn``'s writes."""
        nids = list(room_nids)
        if txn is not None:
            for nid in nids:
                self._writes.pop((id(txn), nid), None)
        super().changed(nids)

    @staticmethod
    def _apply(before: Sequence[str], changes: dict[str, str], suffix: str) -> tuple[str, ...]:
        """The list ``before`` with the memberships ``changes`` of its local users."""
        users = dict.fromkeys(before)
        for user_id, membership in changes.items():
            if not user_id.endswith(suffix):
                continue
            if membership in LISTED:
                users[user_id] = None
            else:
                users.pop(user_id, None)
        return tuple(users)

    async def get(self, room_nid: int, read: Callable[[], Awaitable[Sequence[str]]]) -> list[str]:
        """A list of the caller's own: the cached one is never handed out to be changed."""

        async def frozen() -> tuple[str, ...]:
            return tuple(await read())

        return list(await super().get(room_nid, frozen))
