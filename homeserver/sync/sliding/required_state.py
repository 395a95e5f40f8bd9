"""``required_state`` of a sliding sync room (MSC4186): which state events to send.

Pure. Each entry is ``[type, state_key]``; ``"*"`` as the type or the state
key matches any; ``"$ME"`` as the state key is the requesting user;
``"$LAZY"`` (with ``m.room.member``) is the members who sent an event in the
timeline being returned (lazy-loading members).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from homeserver.sync.sliding.request import StatePair

WILDCARD = "*"
ME = "$ME"
LAZY = "$LAZY"
MEMBER = "m.room.member"


def _expand(pairs: Sequence[StatePair], user_id: str, senders: Iterable[str]) -> list[StatePair]:
    out: list[StatePair] = []
    for event_type, key in pairs:
        if key == ME:
            out.append((event_type, user_id))
        elif key == LAZY:
            if event_type == MEMBER:
                out.extend((MEMBER, s) for s in sorted(set(senders)))
        else:
            out.append((event_type, key))
    return out


def needed_keys(
    pairs: Sequence[StatePair], user_id: str, senders: Iterable[str]
) -> list[StatePair] | None:
    """The exact state keys to load, or None when a wildcard needs the whole state."""
    expanded = _expand(pairs, user_id, senders)
    if any(WILDCARD in p for p in expanded):
        return None
    return list(dict.fromkeys(expanded))


def matches(
    pairs: Sequence[StatePair], user_id: str, senders: Iterable[str], key: StatePair
) -> bool:
    """Does state event ``key`` (type, state_key) fall under ``required_state``?"""
    for event_type, state_key in _expand(pairs, user_id, senders):
        if event_type in (WILDCARD, key[0]) and state_key in (WILDCARD, key[1]):
            return True
    return False
