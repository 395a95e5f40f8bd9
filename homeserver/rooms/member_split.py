"""A state group's entries split into its members and the rest, for lazy-loaded members.

A lazy-loaded initial /sync of a 2,000-member room keeps the room's non-member state and
a handful of members (the timeline's senders, the user): picking those by looking at
every entry's key cost a Python call per member per request. A group never changes once
written, so the split is worked out once per group and kept (bounded, least recently used
first). The state store hands out the same dict object for a group until it forgets its
cached groups (a partial-state merge changes them in place): a split made from another
object is made again, so it needs no invalidation of its own.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from homeserver.rooms.auth.constants import MEMBER

# Groups whose split is kept (one dict entry per member each).
MAX_GROUPS: Final = 64

StateKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Split:
    """One group's state: ``source`` (key nid -> event nid, as the store gave it), its
    non-member entries, and its member entries by user id (key nid, event nid)."""

    source: Mapping[int, int]
    others: dict[int, int]
    members: dict[str, tuple[int, int]]

    def pick(self, users: Iterable[str]) -> dict[int, int]:
        """The non-member entries and those of ``users`` (key nid -> event nid)."""
        out = dict(self.others)
        for user in users:
            hit = self.members.get(user)
            if hit is not None:
                out[hit[0]] = hit[1]
        return out


class MemberSplits:
    def __init__(self, max_groups: int = MAX_GROUPS) -> None:
        self.max_groups = max_groups
        self._splits: OrderedDict[int, Split] = OrderedDict()

    async def pick(
        self,
        group: int,
        nids: Mapping[int, int],
        users: Collection[str],
        names: Callable[[Iterable[int]], Awaitable[Mapping[int, StateKey]]],
    ) -> dict[int, int]:
        """``nids`` (group ``group``'s whole state) without the members not in ``users``;
        ``names`` turns key nids into (type, state key)."""
        split = self._splits.get(group)
        if split is None or split.source is not nids:
            keys = await names(nids.keys())
            others: dict[int, int] = {}
            members: dict[str, tuple[int, int]] = {}
            for key_nid, event_nid in nids.items():
                key = keys.get(key_nid)
                if key is None:
                    continue
                if key[0] == MEMBER:
                    members[key[1]] = (key_nid, event_nid)
                else:
                    others[key_nid] = event_nid
            split = Split(nids, others, members)
            self._splits[group] = split
            while len(self._splits) > self.max_groups:
                self._splits.popitem(last=False)
        else:
            self._splits.move_to_end(group)
        return split.pick(users)
