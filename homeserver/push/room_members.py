"""A room's members as push evaluation needs them, read once per membership change.

Design note
-----------
Evaluating an ordinary message in a big room used to read every membership row and
look at every local member in Python, though nearly all of them share one outcome
(``notifications.py``). Memberships change far less often than messages are sent, so
``PushRoom`` keeps, per room, what an evaluation needs: the number of members, the
position of the newest membership change it read, the local members joined now as
one frozenset (the members a shared row covers, handed to the member spans as the
same object each time, which they compare by identity first) and their display names.
For a message after the newest membership change (``newest``), the members whose
outcome may differ from the shared one are then found without a loop over the room:

- the ones the event names (``m.mentions.user_ids``, a ``state_key``);
- the ones whose rules may not be the defaults (``PushRuleService.customised``);
- the ones whose user id a default rule would read as a glob (``always``).

Display names need no index: since the spec's v1.17 no default rule looks at them
(``rules.py``), so only a member with rules of their own can be matched by name, and
those are evaluated in full anyway, with the name kept here (``names``).

The cache is a follower of the local members cache (``rooms.room_cache``): it is
dropped, in this process and in the others over the signal bus, whenever a membership
row of the room changes. As the bus may bring that drop after the next message, a
process that shares the database with others first probes for a membership newer than
``newest`` (``MembershipStore.membership_changed_after``, one index lookup). Built by
pure ``build_push_room``; no I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from homeserver.rooms.room_cache import RoomCache
from homeserver.rooms.store.membership_store import Membership

# The cache's name (it has no bus topic of its own: it follows ``local_members``).
PUSH_MEMBERS_CACHE: Final = "push_members"
MAX_ROOMS: Final = 1024

_GLOB = ("*", "?", "[")


@dataclass(frozen=True, slots=True)
class PushRoom:
    """One room's memberships as read at some moment (see the module's note). Only the
    local members are kept (a big room's remote members would cost memory for nothing
    but their number)."""

    floor: int  # the ``since`` of the read: every membership changed at or after it seen
    newest: int  # position of the newest membership row read (0: none)
    member_count: int  # members joined, on any server
    local: frozenset[str]  # the local members joined
    names: Mapping[str, str | None] | None  # their display names (None: not known)
    always: frozenset[str]  # local members evaluated in full for every event


def build_push_room(
    rows: Iterable[Membership], names: Mapping[str, str | None] | None, floor: int, suffix: str
) -> PushRoom:
    """The ``PushRoom`` of ``rows`` and ``names`` (``push_members``'s answer for ``floor``)."""
    newest = 0
    count = 0
    local: list[str] = []
    for m in rows:
        newest = max(newest, m.stream_ordering)
        if m.membership == "join":
            count += 1
            if m.user_id.endswith(suffix):
                local.append(m.user_id)
    return PushRoom(
        floor=floor,
        newest=newest,
        member_count=count,
        local=frozenset(local),
        names=None if names is None else {u: names.get(u) for u in local},
        always=frozenset(u for u in local if any(c in u for c in _GLOB)),
    )


class PushRoomCache(RoomCache[PushRoom]):
    """Room nid -> its ``PushRoom``; a follower of the local members cache."""

    def __init__(self, max_rooms: int = MAX_ROOMS) -> None:
        super().__init__(PUSH_MEMBERS_CACHE, max_rooms)
