"""A room's members as push evaluation needs them, read once per membership change.

Design note
-----------
Evaluating an ordinary message in a big room used to read every membership row and
look at every local member in Python, though nearly all of them share one outcome
(``notifications.py``). Memberships change far less often than messages are sent, so
``PushRoom`` keeps, per room, what an evaluation needs: the membership rows (joined
ones, and the others changed at or after ``floor``), the local members joined now as
one frozenset (the members a shared row covers, handed to the member spans as the same
object each time), and an index of the words of their display names. For a message
after the newest membership change (``newest``), the members whose outcome may differ
from the shared one are then found without a loop over the room:

- the ones the event names (``m.mentions.user_ids``, a ``state_key``);
- the ones whose rules may not be the defaults (``PushRuleService.customised``);
- the ones whose display name may be in the body (``candidates``): every maximal run
  of word characters of a name (``[A-Za-z0-9_]``, as the rule's word boundaries see
  them) is, wherever the name matches, a whole run of the body's word characters too,
  equal to it once both are folded (the only characters outside ASCII that the rule's
  case-insensitive match takes for ASCII word characters fold to them: U+0130, U+0131,
  U+017F, U+212A). So a name is indexed under one of its runs and looked up by the
  body's runs; a name without any run (or a user id that a default rule would read as a
  glob) is always a candidate. Candidates may be too many (they are evaluated in
  full), never too few.

The cache is a follower of the local members cache (``rooms.room_cache``): it is
dropped, in this process and in the others over the signal bus, whenever a membership
row of the room changes. Built by pure ``build_push_room``; no I/O here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from homeserver.rooms.room_cache import RoomCache
from homeserver.rooms.store.membership_store import Membership

# The cache's name (it has no bus topic of its own: it follows ``local_members``).
PUSH_MEMBERS_CACHE: Final = "push_members"
MAX_ROOMS: Final = 1024

# The word characters of ``evaluator._display_name_regex``'s boundaries, case-insensitive.
_WORD = re.compile(r"[A-Za-z0-9_]+", re.IGNORECASE)
# Characters outside ASCII matched to an ASCII one case-insensitively that ``casefold``
# keeps apart (U+212A and U+017F it folds to ``k`` and ``s`` already).
_DOTTED_I = str.maketrans({"\u0130": "i", "\u0131": "i"})
_GLOB = ("*", "?", "[")


def fold(word: str) -> str:
    """A run of word characters as ASCII lower case (one character for one)."""
    return word if word.isascii() and word.islower() else word.translate(_DOTTED_I).casefold()


def body_words(body: str) -> set[str]:
    """The folded runs of word characters of a message body."""
    return {fold(w) for w in _WORD.findall(body)}


@dataclass(frozen=True, slots=True)
class PushRoom:
    """One room's memberships as read at some moment (see the module's note)."""

    rows: tuple[Membership, ...]  # joined now, and any membership changed at or after floor
    names: Mapping[str, str | None] | None  # user -> display name (None: not known)
    floor: int
    newest: int  # position of the newest membership row (0: none)
    joined: frozenset[str]  # every member joined now, on any server
    local: frozenset[str]  # the local ones
    by_word: Mapping[str, tuple[str, ...]]  # a folded name word -> local members so named
    always: frozenset[str]  # local members that are candidates for any body

    def candidates(self, body: object) -> set[str]:
        """Local members whose display name may match ``body`` (a superset), and those
        always evaluated in full."""
        out = set(self.always)
        if isinstance(body, str) and self.by_word:
            for word in body_words(body):
                hit = self.by_word.get(word)
                if hit is not None:
                    out.update(hit)
        return out


def build_push_room(
    rows: Iterable[Membership], names: Mapping[str, str | None] | None, floor: int, suffix: str
) -> PushRoom:
    """The ``PushRoom`` of ``rows`` (``push_members``'s answer for ``floor``)."""
    rows = tuple(rows)
    joined = frozenset(m.user_id for m in rows if m.membership == "join")
    local = frozenset(u for u in joined if u.endswith(suffix))
    by_word: dict[str, list[str]] = {}
    always: set[str] = set()
    for user_id in local:
        if any(c in user_id for c in _GLOB):
            always.add(user_id)
        if names is None:
            continue
        name = names.get(user_id)
        if not name:
            continue
        words = _WORD.findall(name)
        if not words:
            always.add(user_id)
            continue
        by_word.setdefault(fold(max(words, key=len)), []).append(user_id)
    return PushRoom(
        rows=rows,
        names=names,
        floor=floor,
        newest=max((m.stream_ordering for m in rows), default=0),
        joined=joined,
        local=local,
        by_word={w: tuple(users) for w, users in by_word.items()},
        always=frozenset(always),
    )


class PushRoomCache(RoomCache[PushRoom]):
    """Room nid -> its ``PushRoom``; a follower of the local members cache."""

    def __init__(self, max_rooms: int = MAX_ROOMS) -> None:
        super().__init__(PUSH_MEMBERS_CACHE, max_rooms)
