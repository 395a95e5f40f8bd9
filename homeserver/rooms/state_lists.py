"""Whole state lists (``GET /state``, ``GET /members``) kept encoded, so that a big room's
answer is one formatting step, not a pass over thousands of events per request.

Design note
-----------
Each state event's client JSON is already encoded once (``client_json.py``: its
*head*, everything before the value of ``unsigned.age``). What was left per request
was Python work per event: the state map rebuilt from the cached nids, the member
list sorted and filtered, each head looked up and joined with its age. Here the
answer itself is kept as one ``%``-template: every head (``%`` escaped) followed by
``%d}}``, so a request computes the ages (one subtraction per event, in C) and formats
them in at once::

    [{"content":...,"unsigned":{"age":%d}},{"content":...,"unsigned":{"prev_content":...,"age":%d}}]

A redacted event's JSON holds a second age (its redaction's, in
``unsigned.redacted_because``): it is a ``%s`` slot, encoded per request as before.

An answer is kept for one *source*: the state-nids map it was built from (the
room's cached current state, ``StateStore.current_state_cached``, or a state
group's, ``StateStore.state_at_group``). Both caches hand out the same object until
what it describes changes, then a new one, so "same object" means "same state"; the
entry holds the object, so its identity cannot be reused. The events' JSON also
depends on the events themselves and on the state events they replaced
(``prev_content``): those change only through ``EventStore.forget`` (a redaction
applied, an erasure; in other processes through the bus), which moves
``EventStore.generation`` on; an entry is kept for one generation. Nothing here
depends on the requester: who may read which state is decided before (the reader's
history visibility picks the source).

Bounded by the bytes of the kept answers; the least recently used sources go first.
"""

from __future__ import annotations

import operator
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Sequence
from itertools import repeat
from typing import Final

import orjson

from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.store.events_store import StoredEvent

# The kept answers' bytes, all sources together (a 2,000-member room's /members and
# /state are ~0.6 MB each).
DEFAULT_MAX_BYTES: Final = 16 * 1024 * 1024
# Per event beyond its JSON: its timestamp in the list (an int and a pointer).
_PER_EVENT: Final = 40


class StateList:
    """One encoded answer: the template, each slot's timestamp (``age`` = now - it),
    and the redacted events with their slots."""

    __slots__ = ("body", "latest", "redacted", "size", "stamps")

    def __init__(self, stored: Sequence[StoredEvent], heads: Sequence[tuple[bytes, int] | None]):
        # The heads themselves (a copy only where a ``%`` is escaped) and constants,
        # joined once: a big room's answer is megabytes, and a copy per head plus one
        # per concatenation held several times that at once (the first read's peak RSS).
        pieces: list[bytes] = [b"["]
        stamps: list[int] = []
        redacted: list[tuple[int, StoredEvent]] = []
        for s, head in zip(stored, heads, strict=True):
            if head is None:
                redacted.append((len(stamps), s))
                pieces.append(b"%s,")
                stamps.append(0)
            else:
                pieces += (head[0].replace(b"%", b"%%"), b"%d}},")
                stamps.append(head[1])
        if stamps:
            pieces[-1] = pieces[-1][:-1]  # no comma after the last
        pieces.append(b"]")
        self.body = b"".join(pieces)
        self.stamps = stamps
        self.latest = max(stamps, default=0)
        self.redacted = redacted
        self.size = len(self.body) + _PER_EVENT * len(stamps)

    def render(self, now: int, redacted_parts: Sequence[bytes]) -> bytes:
        """The answer at ``now`` (ms); ``redacted_parts``: the redacted events' JSON, in
        ``redacted``'s order. An age is never negative (a remote clock ahead of ours)."""
        if now >= self.latest:
            args: list[int | bytes] = list(map(operator.sub, repeat(now), self.stamps))
        else:
            args = [now - t if now > t else 0 for t in self.stamps]
        for (slot, _), part in zip(self.redacted, redacted_parts, strict=True):
            args[slot] = part
        return self.body % tuple(args)


class _Entry:
    __slots__ = ("generation", "lists", "size", "source")

    def __init__(self, source: object, generation: int) -> None:
        self.source = source
        self.generation = generation
        self.lists: dict[Hashable, StateList] = {}
        self.size = 0


class StateLists:
    def __init__(self, serializer: EventSerializer, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.serializer = serializer
        self.max_bytes = max_bytes
        # (kind of source, its id) -> the answers built from it.
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return sum(len(e.lists) for e in self._entries.values())

    async def answer(
        self,
        key: Hashable,
        source: object,
        variant: Hashable,
        events: Callable[[], Awaitable[list[StoredEvent]]],
    ) -> orjson.Fragment:
        """The JSON array of ``events()`` (client format, ``with_room_id``), built from
        ``source`` (a cached state-nids map) and kept under ``key`` and ``variant`` (which
        list of that state) until the source or an event changes."""
        generation = self.serializer.events.generation
        entry = self._entries.get(key)
        found = None
        if entry is not None and entry.source is source and entry.generation == generation:
            self._entries.move_to_end(key)
            found = entry.lists.get(variant)
        if found is None:
            stored = await events()
            found = StateList(stored, await self.serializer.client_heads(stored))
            self._keep(key, source, generation, variant, found)
        parts: list[bytes] = []
        if found.redacted:
            parts = await self.serializer.client_parts([s for _, s in found.redacted])
        return orjson.Fragment(found.render(self.serializer.clock.now_ms(), parts))

    def _keep(
        self, key: Hashable, source: object, generation: int, variant: Hashable, built: StateList
    ) -> None:
        if generation != self.serializer.events.generation or built.size > self.max_bytes:
            return  # an event changed while it was built, or too big to keep
        entry = self._entries.get(key)
        if entry is None or entry.source is not source or entry.generation != generation:
            if entry is not None:
                self._bytes -= entry.size
            entry = self._entries[key] = _Entry(source, generation)
        old = entry.lists.get(variant)
        if old is not None:
            entry.size -= old.size
            self._bytes -= old.size
        entry.lists[variant] = built
        entry.size += built.size
        self._bytes += built.size
        self._entries.move_to_end(key)
        while self._bytes > self.max_bytes and self._entries:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.size
