"""One value per room, kept until the room changes here or in another process.

Shared by the caches of a room's local members (``rooms.store.local_members_cache``)
and of its server ACL (``federation.pdu.acl_cache``): both are read often, change
inside the event persister's transaction, and must never keep a stale answer.

Design note
-----------
The writer calls ``drop`` *before* its commit and ``changed`` *after* it (or the
rollback). A ``generation`` counter per room keeps a read that raced with the write
from storing what it read: ``get`` notes the generation before ``read()`` and stores
the answer only if no drop happened meanwhile. ``changed`` also tells other processes
over the same PostgreSQL through ``publish`` (the signal bus; the topic is the cache's
name, keys are room nids), whose handler is ``drop_cached``; after a bus reconnect
``drop_cached(None)`` empties the cache and starts a new ``epoch``, which every stored
answer also checks. Bounded: the least recently used rooms go first.

A cache of values derived from the same rows (push evaluation's view of a room's
members, ``push.room_members``) is made a ``follower``: every drop here, local or
from the bus, drops it too, so it needs no drop calls or bus topic of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

V = TypeVar("V")

DEFAULT_MAX_ROOMS: Final = 4096


@dataclass(frozen=True, slots=True)
class MemberChange:
    """One membership row a committed transaction wrote (``RoomCache.advance``)."""

    user_id: str
    membership: str
    stream_ordering: int
    displayname: str | None


class RoomCache(Generic[V]):
    def __init__(self, topic: str, max_rooms: int = DEFAULT_MAX_ROOMS) -> None:
        self.topic = topic
        self.max_rooms = max_rooms
        # room nid -> value (None is a value: "the room has none").
        self._values: OrderedDict[int, V] = OrderedDict()
        # Bumped by every drop; a room absent here is at generation 0.
        self._generation: dict[int, int] = {}
        self._epoch = 0
        # Other processes are told through this (None: one process).
        self.publish: Callable[[str, list[str]], None] | None = None
        # Caches of values derived from the same rows: dropped whenever this one is.
        self.followers: list[RoomCache[Any]] = []

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, room_nid: int) -> bool:
        return room_nid in self._values

    async def get(self, room_nid: int, read: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or ``read()``'s answer (stored unless a drop raced with it)."""
        if room_nid in self._values:
            self._values.move_to_end(room_nid)
            return self._values[room_nid]
        generation = self._generation.get(room_nid, 0)
        epoch = self._epoch
        value = await read()
        if self._generation.get(room_nid, 0) == generation and self._epoch == epoch:
            self._values[room_nid] = value
            while len(self._values) > self.max_rooms:
                self._values.popitem(last=False)
        return value

    def advance(self, before: V, changes: Sequence[MemberChange], suffix: str) -> V | None:
        """The value after the committed ``changes`` (in stream order) of the room whose
        value was ``before``; None when it cannot be worked out without a read (the
        default). ``suffix``: ``:`` and this server's name (local users end with it)."""
        return None

    def swap(self, room_nid: int, old: V, new: V) -> None:
        """Replace the cached ``old`` by ``new``, an equivalent value (trimmed, say)."""
        if self._values.get(room_nid) is old:
            self._values[room_nid] = new

    def peek(self, room_nid: int) -> tuple[V | None, int, int]:
        """The cached value (None if absent), the room's generation and the epoch: what a
        writer that brings a value up to date itself (``put``) must see unchanged."""
        return self._values.get(room_nid), self._generation.get(room_nid, 0), self._epoch

    def put(self, room_nid: int, value: V, generation: int, epoch: int) -> bool:
        """Store ``value``, worked out by a writer from the value it ``peek``-ed at
        ``generation`` and ``epoch``, unless another drop came since. Reads in flight
        are kept from storing over it (the generation moves on). Whether it was stored."""
        if self._generation.get(room_nid, 0) != generation or self._epoch != epoch:
            return False
        self.drop([room_nid])
        self._values[room_nid] = value
        while len(self._values) > self.max_rooms:
            self._values.popitem(last=False)
        return True

    def drop(self, room_nids: Iterable[int]) -> None:
        """Forget these rooms' values in this process only."""
        room_nids = list(room_nids)
        for follower in self.followers:
            follower.drop(room_nids)
        for nid in room_nids:
            self._values.pop(nid, None)
            self._generation[nid] = self._generation.get(nid, 0) + 1
        if len(self._generation) > 4 * self.max_rooms:
            # Old counters only matter to reads in flight: start a new epoch instead.
            self.drop_cached(None)

    def changed(self, room_nids: Iterable[int]) -> None:
        """These rooms changed (committed or rolled back): forget them here and in
        every other process."""
        nids = list(room_nids)
        self.drop(nids)
        if self.publish is not None and nids:
            self.publish(self.topic, [str(n) for n in nids])

    def drop_cached(self, keys: list[str] | None) -> None:
        """The bus's handler: these room nids changed elsewhere (None: anything may have)."""
        if keys is None:
            for follower in self.followers:
                follower.drop_cached(None)
            self._values.clear()
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
