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


def needs_all_members(pairs: Sequence[StatePair], server_name: str) -> bool:
    """Does ``required_state`` ask for memberships a partial-state room may lack?

    A room joined with partial state (``omit_members``) has all its state but the
    members of other servers, merged later in place (they would never be sent as
    changes). A list or subscription asking for every member (``[m.room.member, *]``),
    every state event (``[*, *]``) or the membership of a user of another server
    (under any type: a state key that is a remote user id) must wait for the whole
    state. ``$LAZY`` is fine: the senders of the timeline were needed to check those
    events, so their memberships are here; ``$ME`` and our own users' are too."""
    for event_type, key in pairs:
        if key == WILDCARD and event_type in (WILDCARD, MEMBER):
            return True
        if key.startswith("@") and ":" in key and key.split(":", 1)[1] != server_name:
            return True
    return False
