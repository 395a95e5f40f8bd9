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
from dataclasses import dataclass, field, replace
from typing import Any, Final

from homeserver.rooms.late_positions import resolve
from homeserver.rooms.room_cache import DEFAULT_MAX_ROOMS, MemberChange, RoomCache

# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are room nids.
LOCAL_MEMBERS_CACHE: Final = "local_members"
# Memberships a local user is listed for (``MembershipStore.local_users``).
LISTED: Final = frozenset({"join", "invite", "knock"})
# Open transactions' writes kept at most (a transaction that never reports is forgotten).
MAX_WRITES: Final = 1024


@dataclass(slots=True)
class _Before:
    """One cache's value for the room before a transaction's first write, and the
    generation after its last drop (another drop since: the value is of no use)."""

    cache: RoomCache[Any]
    value: Any  # None: not cached
    generation: int
    epoch: int


@dataclass(slots=True)
class _Writes:
    """One transaction's membership writes into one room, before its commit."""

    befores: list[_Before]  # this cache's and each follower's
    changes: list[MemberChange] = field(default_factory=list)


class LocalMembersCache(RoomCache[Sequence[str]]):
    """Room nid -> its local users joined, invited or knocking (kept as a tuple)."""

    def __init__(self, max_rooms: int = DEFAULT_MAX_ROOMS, server_name: str | None = None) -> None:
        super().__init__(LOCAL_MEMBERS_CACHE, max_rooms)
        # Local users end with this; None: lists are never brought up to date, only read.
        self.suffix = None if server_name is None else ":" + server_name
        # (id of the open transaction, room nid) -> what it wrote so far.
        self._writes: dict[tuple[int, int], _Writes] = {}

    def writing(
        self,
        txn: object,
        room_nid: int,
        user_id: str,
        membership: str,
        stream_ordering: int = 0,
        displayname: str | None = None,
    ) -> None:
        """Transaction ``txn`` writes ``user_id``'s membership row in the room (before its
        commit): drop the room's list (and the followers' values), and note the write and
        what was cached for ``committed``."""
        key = (id(txn), room_nid)
        caches: list[RoomCache[Any]] = [self, *self.followers]
        seen = [c.peek(room_nid) for c in caches]
        writes = self._writes.get(key)
        self.drop([room_nid])
        if writes is None:
            if len(self._writes) >= MAX_WRITES:
                self._writes.clear()
            befores = [
                _Before(c, value, 0, epoch)
                for c, (value, _, epoch) in zip(caches, seen, strict=True)
            ]
            writes = self._writes[key] = _Writes(befores)
        else:
            for before, (_, generation, epoch) in zip(writes.befores, seen, strict=True):
                if (before.generation, before.epoch) != (generation, epoch):
                    before.value = None  # another drop since this transaction's last one
        for before in writes.befores:
            _, before.generation, before.epoch = before.cache.peek(room_nid)
        writes.changes.append(MemberChange(user_id, membership, stream_ordering, displayname))

    def committed(
        self, txn: object, room_nids: Iterable[int], positions: Sequence[int] = ()
    ) -> None:
        """``txn`` committed its membership writes into these rooms: drop them here and
        in other processes (``changed``), and keep the values brought up to date.
        ``positions``: those the transaction took last, which its writes noted as
        placeholders (``rooms.late_positions``)."""
        nids = list(dict.fromkeys(room_nids))
        updates: list[tuple[int, RoomCache[Any], Any]] = []
        for nid in nids:
            writes = self._writes.pop((id(txn), nid), None)
            if writes is None or self.suffix is None:
                continue
            changes = sorted(
                (
                    replace(c, stream_ordering=resolve(c.stream_ordering, positions))
                    for c in writes.changes
                ),
                key=lambda c: c.stream_ordering,
            )
            for before in writes.befores:
                _, generation, epoch = before.cache.peek(nid)
                if before.value is None or (before.generation, before.epoch) != (
                    generation,
                    epoch,
                ):
                    continue
                value = before.cache.advance(before.value, changes, self.suffix)
                if value is not None:
                    updates.append((nid, before.cache, value))
        self.changed(nids)
        for nid, cache, value in updates:
            _, generation, epoch = cache.peek(nid)
            cache.put(nid, value, generation, epoch)

    def changed(self, room_nids: Iterable[int], txn: object | None = None) -> None:
        """These rooms changed (committed or rolled back): forget them here and in other
        processes, and ``txn``'s writes."""
        nids = list(room_nids)
        if txn is not None:
            for nid in nids:
                self._writes.pop((id(txn), nid), None)
        super().changed(nids)

    def advance(
        self, before: Sequence[str], changes: Sequence[MemberChange], suffix: str
    ) -> tuple[str, ...]:
        """The list ``before`` with the memberships ``changes`` of its local users."""
        users = dict.fromkeys(before)
        for change in changes:
            if not change.user_id.endswith(suffix):
                continue
            if change.membership in LISTED:
                users[change.user_id] = None
            else:
                users.pop(change.user_id, None)
        return tuple(users)

    async def get(self, room_nid: int, read: Callable[[], Awaitable[Sequence[str]]]) -> list[str]:
        """A list of the caller's own: the cached one is never handed out to be changed."""

        async def frozen() -> tuple[str, ...]:
            return tuple(await read())

        return list(await super().get(room_nid, frozen))
