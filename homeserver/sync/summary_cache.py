"""What a room's /sync ``summary`` is made of, kept per room until the rows behind it change.

A room's ``summary`` (``m.joined_member_count``, ``m.invited_member_count``, and for a
room with neither a name nor an alias ``m.heroes``) was read from the database at every
sync that showed it: every initial sync, and every sync whose timeline or state held a
membership event. In a room of 2,000 members the counts alone read 2,000 rows (0.6 ms
on PostgreSQL, a tenth of a lazy-loaded initial sync), and the three reads were three
of a lazy-loaded initial sync's ten statements, though their answers change only
when a membership (the counts, the heroes) or the current state (the name) does.

Design note
-----------
Each value is a follower of the cache whose rows it comes from (``rooms.room_cache``):
the counts and the hero candidates follow the local members cache
(``rooms.store.local_members_cache``), which every membership write drops before its
commit and again after it; the nids of the room's current ``m.room.name`` and
``m.room.canonical_alias`` events follow the current state cache
(``rooms.store.state_store``), which every write of the current state drops (whether
they name the room is read from the events themselves, through the event cache, which
a redaction of one of them updates: ``names_room``). Both leaders drop their followers
here and, over the signal bus, in the other processes; a read racing
with a write is kept from storing what it read (``RoomCache.put``). A change is never
applied to a kept value: the next sync that needs the room reads it again, once.

The heroes depend on who asks (the reader is never their own hero), so the kept value
is the room's first ``HEROES + 1`` joined or invited members and first ``HEROES + 1``
who left or were banned, oldest first, with no one left out: the reader's heroes are
those without the reader, cut to ``HEROES`` (``heroes_for``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from homeserver.rooms.room_cache import RoomCache
from homeserver.rooms.store.events_store import StoredEvent

# The caches' names (they have no bus topics of their own: they follow their leaders').
MEMBER_COUNTS_CACHE: Final = "sync_member_counts"
HERO_CANDIDATES_CACHE: Final = "sync_hero_candidates"
NAMING_CACHE: Final = "sync_naming"
MAX_ROOMS: Final = 4096
# Heroes per room (spec: "Calculating the display name for a room" uses up to 5).
HEROES: Final = 5

V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class HeroCandidates:
    """A room's oldest members joined or invited, and oldest who left or were banned
    (``HEROES + 1`` of each at most, in stream order)."""

    present: tuple[str, ...]
    gone: tuple[str, ...]


def heroes_for(candidates: HeroCandidates, user_id: str) -> list[str]:
    """The heroes ``user_id`` is shown: up to ``HEROES`` joined or invited members other
    than them, oldest first; when there are none, those who left (spec: "Calculating
    the display name for a room")."""
    present = [u for u in candidates.present if u != user_id]
    if present:
        return present[:HEROES]
    return [u for u in candidates.gone if u != user_id][:HEROES]


def names_room(stored: StoredEvent) -> bool:
    """Whether this current ``m.room.name`` or ``m.room.canonical_alias`` event names the
    room: a non-empty ``name`` or ``alias`` (spec: a room with neither gets heroes)."""
    content = stored.event.pdu.get("content")
    field = "name" if stored.event.type == "m.room.name" else "alias"
    return isinstance(content, dict) and bool(content.get(field))


class SummaryCache(RoomCache[V], Generic[V]):
    """Room nid -> one part of its summary; a follower (see the module's note)."""

    def __init__(self, topic: str, max_rooms: int = MAX_ROOMS) -> None:
        super().__init__(topic, max_rooms)

    async def many(
        self,
        room_nids: Sequence[int],
        read: Callable[[list[int]], Awaitable[Mapping[int, V]]],
        absent: V,
    ) -> dict[int, V]:
        """Every room's value, ``read`` once for those not kept (a room missing from its
        answer has ``absent``); what was read is kept unless a write dropped the room
        while it was being read."""
        out: dict[int, V] = {}
        missing: list[tuple[int, int, int]] = []
        for nid in room_nids:
            value, generation, epoch = self.peek(nid)
            if value is None:
                missing.append((nid, generation, epoch))
            else:
                out[nid] = value
        if missing:
            found = await read([nid for nid, _, _ in missing])
            for nid, generation, epoch in missing:
                value = found.get(nid, absent)
                out[nid] = value
                self.put(nid, value, generation, epoch)
        return out
