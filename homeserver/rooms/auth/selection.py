"""Auth events selection (spec: server-server API "Auth events selection").

Which ``(type, state_key)`` pairs of the room state a new event's
``auth_events`` are drawn from. Room version 12 never selects the create
event: the room id names it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.auth.constants import (
    AUTHORISING_USER,
    CREATE,
    CREATE_KEY,
    INVITE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK,
    MEMBER,
    POWER_LEVELS_KEY,
    THIRD_PARTY_INVITE,
)


def third_party_invite_token(content: Mapping[str, Any]) -> str | None:
    """``content.third_party_invite.signed.token`` if it is a string."""
    tpi = content.get("third_party_invite")
    if not isinstance(tpi, dict):
        return None
    signed = tpi.get("signed")
    if not isinstance(signed, dict):
        return None
    token = signed.get("token")
    return token if isinstance(token, str) else None


def auth_types_for_event(
    event_type: str,
    state_key: str | None,
    sender: str,
    content: Mapping[str, Any],
    room_version: RoomVersion,
) -> list[tuple[str, str]]:
    """The state keys a new event's ``auth_events`` may cite, without duplicates.

    The create event's own ``auth_events`` are empty. The list is the set of
    candidates; an event cites only those present in the room state.
    """
    if event_type == CREATE:
        return []
    sender_key = (MEMBER, sender)
    if room_version.room_id_from_create_event:
        selected = [POWER_LEVELS_KEY, sender_key]
    else:
        selected = [CREATE_KEY, POWER_LEVELS_KEY, sender_key]
    if event_type != MEMBER or state_key is None:
        return selected
    if state_key != sender:
        selected.append((MEMBER, state_key))
    membership = content.get("membership")
    if membership in (JOIN, INVITE, KNOCK):
        selected.append(JOIN_RULES_KEY)
    if membership == INVITE:
        token = third_party_invite_token(content)
        if token is not None:
            selected.append((THIRD_PARTY_INVITE, token))
    elif membership == JOIN and room_version.restricted_join:
        # v8+: the authorising user of a restricted join.
        authoriser = content.get(AUTHORISING_USER)
        if isinstance(authoriser, str):
            key = (MEMBER, authoriser)
            if key not in selected:
                selected.append(key)
    return selected
