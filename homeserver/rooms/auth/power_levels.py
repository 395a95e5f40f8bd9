"""Power levels as the authorisation rules read them.

Spec: server-server API "Definitions" (required power level, invite/kick/ban/
redact level), the ``m.room.power_levels`` event schema (defaults), and room
version 12 "room creators" (infinitely high power level).

Levels are read straight from the event content on each call, with no parsed
copy: most checks need one or two values. Malformed values in an *accepted*
power levels event cannot occur in strict (v10+) rooms; if one does, it reads
as absent, so the default applies.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion

# A power level: an int, or CREATOR_POWER (room version 12 creators), which is
# greater than every int. Python compares int and float exactly.
Power: TypeAlias = int | float
CREATOR_POWER: Final[float] = math.inf

DEFAULT_CREATOR_LEVEL: Final = 100  # v10/v11 creator when there is no power levels event
DEFAULT_USERS: Final = 0
DEFAULT_EVENTS: Final = 0
DEFAULT_STATE: Final = 50
DEFAULT_INVITE: Final = 0
DEFAULT_KICK: Final = 50
DEFAULT_BAN: Final = 50
DEFAULT_REDACT: Final = 50
DEFAULT_NOTIFICATION: Final = 50

# Room versions 1-9 accepted string levels: optional sign, decimal digits,
# surrounding whitespace (rooms/fragments/v1-stringy-power-levels).
_STRINGY_INT: Final = re.compile(r"\s*[+-]?[0-9]+\s*")


def as_level(value: object, room_version: RoomVersion) -> int | None:
    """``value`` as a power level, or None if the room version does not accept it.

    Strict versions (``strict_integer_power_levels``, v10+) accept only JSON
    integers; ``true``/``false`` are not integers. v1-v9 also accept strings
    of an integer, v1-v5 floats (truncated).
    """
    if type(value) is int:
        return value
    if room_version.floaty_power_levels and type(value) is float:
        # v1-v5 (v1-floaty-power-levels): truncate at the decimal point.
        return int(value) if math.isfinite(value) else None
    if not room_version.strict_integer_power_levels and isinstance(value, str):
        if _STRINGY_INT.fullmatch(value):
            return int(value)
    return None


def _level(content: Mapping[str, Any], key: str, default: int, rv: RoomVersion) -> int:
    value = content.get(key)
    if value is None:
        return default
    level = as_level(value, rv)
    return default if level is None else level


def _sub_level(
    content: Mapping[str, Any], key: str, sub: str, default: int, rv: RoomVersion
) -> int:
    table = content.get(key)
    if not isinstance(table, dict):
        return default
    return _level(table, sub, default, rv)


def room_creator(create: Event) -> str | None:
    """The single creator of versions before 12: ``content.creator`` (v10) or sender (v11+)."""
    if create.room_version.implicit_room_creator:
        return create.sender
    creator = create.content.get("creator")
    return creator if isinstance(creator, str) else None


def is_creator(user_id: str, create: Event) -> bool:
    """Whether ``user_id`` is a room creator.

    v12 ("privileged_creators"): the create sender or a member of
    ``content.additional_creators``. Earlier versions: ``room_creator``.
    """
    if not create.room_version.privileged_creators:
        return user_id == room_creator(create)
    if user_id == create.sender:
        return True
    extra = create.content.get("additional_creators")
    return isinstance(extra, list) and user_id in extra


def user_power_level(user_id: str, power_levels: Event | None, create: Event | None) -> Power:
    """The power level of ``user_id`` (spec: power levels schema, v12 room creators).

    v12 creators have CREATOR_POWER whatever the power levels say. Otherwise
    ``users[user_id]``, else ``users_default`` (0). With no power levels
    event, the creator of a v10/v11 room has 100 and everyone else 0.
    """
    if create is not None and create.room_version.privileged_creators:
        if is_creator(user_id, create):
            return CREATOR_POWER
    if power_levels is None:
        if create is not None and user_id == room_creator(create):
            return DEFAULT_CREATOR_LEVEL
        return DEFAULT_USERS
    content = power_levels.content
    rv = power_levels.room_version
    users = content.get("users")
    if isinstance(users, dict) and user_id in users:
        level = as_level(users[user_id], rv)
        if level is not None:
            return level
    return _level(content, "users_default", DEFAULT_USERS, rv)


def required_power_level(event_type: str, is_state: bool, power_levels: Event | None) -> int:
    """The *required power level* for an event type: ``events[type]``, else
    ``state_default`` (50) for state events or ``events_default`` (0)."""
    if power_levels is None:
        return DEFAULT_STATE if is_state else DEFAULT_EVENTS
    content = power_levels.content
    rv = power_levels.room_version
    events = content.get("events")
    if isinstance(events, dict) and event_type in events:
        level = as_level(events[event_type], rv)
        if level is not None:
            return level
    if is_state:
        return _level(content, "state_default", DEFAULT_STATE, rv)
    return _level(content, "events_default", DEFAULT_EVENTS, rv)


def _named_level(power_levels: Event | None, key: str, default: int) -> int:
    if power_levels is None:
        return default
    return _level(power_levels.content, key, default, power_levels.room_version)


def invite_level(power_levels: Event | None) -> int:
    """The *invite level* (default 0)."""
    return _named_level(power_levels, "invite", DEFAULT_INVITE)


def kick_level(power_levels: Event | None) -> int:
    """The *kick level* (default 50)."""
    return _named_level(power_levels, "kick", DEFAULT_KICK)


def ban_level(power_levels: Event | None) -> int:
    """The *ban level* (default 50)."""
    return _named_level(power_levels, "ban", DEFAULT_BAN)


def redact_level(power_levels: Event | None) -> int:
    """The *redact level* (default 50). Not an auth rule: see ``redaction``."""
    return _named_level(power_levels, "redact", DEFAULT_REDACT)


def notification_level(power_levels: Event | None, key: str = "room") -> int:
    """The level needed to trigger notification ``key`` (``room``: ``@room``; default 50)."""
    if power_levels is None:
        return DEFAULT_NOTIFICATION
    return _sub_level(
        power_levels.content,
        "notifications",
        key,
        DEFAULT_NOTIFICATION,
        power_levels.room_version,
    )
