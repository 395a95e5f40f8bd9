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
row of the room changes; a commit of local users' memberships in this process then
brings it up to date at once (``advance_push_room``), keeping how to undo each change so
that evaluation, behind the commits, still sees the members before its event
(``PushRoom.at``): a join into a big room reads no member rows. As the bus may bring
that drop after the next message, a process that shares the database with others first
probes for a membership newer than ``newest`` (``MembershipStore.membership_changed_after``,
one index lookup). Built by pure ``build_push_room``; no I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from homeserver.rooms.room_cache import MemberChange, RoomCache
from homeserver.rooms.store.membership_store import Membership

# The cache's name (it has no bus topic of its own: it follows ``local_members``).
PUSH_MEMBERS_CACHE: Final = "push_members"
MAX_ROOMS: Final = 1024
# Membership changes a room keeps the undoing of (``PushRoom.undo``): how far evaluation
# may lag behind a burst of joins before it has to read the members again.
MAX_UNDO: Final = 4096

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
    # How to go back from here to the members before each committed change that brought
    # this value up to date (``advance_push_room``), oldest first; ``base`` is the
    # ``newest`` of the value they all go back to. Evaluation, behind the commits, asks
    # for the members before its event (``at``).
    undo: tuple[Undo, ...] = ()
    base: int = 0

    def at(self, so: int) -> PushRoom | None:
        """The members before an event at ``so``: this value, or the one before the
        changes at or after ``so`` (None if one of those was not kept: read them)."""
        if so > self.newest or not self.undo:
            return self  # after every change; or read for it (``floor``): as it is
        if so <= self.base:
            return None
        local = set(self.local)
        names = None if self.names is None else dict(self.names)
        always = set(self.always)
        count = self.member_count
        newest = self.base
        for u in reversed(self.undo):
            if u.position < so:
                newest = u.position
                break
            count -= u.count_delta
            if u.was_local:
                local.add(u.user_id)
                if names is not None:
                    names[u.user_id] = u.old_name
                if any(c in u.user_id for c in _GLOB):
                    always.add(u.user_id)
            else:
                local.discard(u.user_id)
                always.discard(u.user_id)
                if names is not None:
                    names.pop(u.user_id, None)
        return PushRoom(
            self.floor, newest, count, frozenset(local), names, frozenset(always), (), newest
        )


@dataclass(frozen=True, slots=True)
class Undo:
    """One local member's committed membership change, and what it changed."""

    position: int
    user_id: str
    was_local: bool  # joined before it
    old_name: str | None  # the display name before it (if joined)
    count_delta: int  # what it added to ``member_count``


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


def advance_push_room(
    room: PushRoom, changes: Sequence[MemberChange], suffix: str
) -> PushRoom | None:
    """``room`` after committed membership ``changes`` (in stream order, all after
    ``room.newest``), keeping how to undo each (``PushRoom.at``). None if a change is
    not a local user's (whether a remote user was joined before, which ``member_count``
    needs, is not kept here) or not after ``newest``."""
    if not changes:
        return room
    local = set(room.local)
    names = None if room.names is None else dict(room.names)
    always = set(room.always)
    count = room.member_count
    undo = list(room.undo)
    newest = room.newest
    for change in sorted(changes, key=lambda c: c.stream_ordering):
        user_id = change.user_id
        if change.stream_ordering <= room.newest or not user_id.endswith(suffix):
            return None
        was = user_id in local
        joined = change.membership == "join"
        old_name = names.get(user_id) if names is not None and was else None
        undo.append(Undo(change.stream_ordering, user_id, was, old_name, int(joined) - int(was)))
        count += int(joined) - int(was)
        newest = max(newest, change.stream_ordering)
        if joined:
            local.add(user_id)
            if names is not None:
                names[user_id] = change.displayname
            if any(c in user_id for c in _GLOB):
                always.add(user_id)
        else:
            local.discard(user_id)
            always.discard(user_id)
            if names is not None:
                names.pop(user_id, None)
    base = room.base if room.undo else room.newest
    if len(undo) > MAX_UNDO:
        base = undo[-MAX_UNDO - 1].position  # the members before it can no longer be told
        undo = undo[-MAX_UNDO:]
    return PushRoom(
        room.floor, newest, count, frozenset(local), names, frozenset(always), tuple(undo), base
    )


class PushRoomCache(RoomCache[PushRoom]):
    """Room nid -> its ``PushRoom``; a follower of the local members cache, brought up to
    date by a commit's membership changes like it (``advance``)."""

    def __init__(self, max_rooms: int = MAX_ROOMS) -> None:
        super().__init__(PUSH_MEMBERS_CACHE, max_rooms)

    def advance(
        self, before: PushRoom, changes: Sequence[MemberChange], suffix: str
    ) -> PushRoom | None:
        return advance_push_room(before, changes, suffix)
