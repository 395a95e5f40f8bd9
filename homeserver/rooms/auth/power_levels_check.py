"""``m.room.power_levels`` events: v10/v11 rule 9, v12 rule 10."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.auth.errors import AuthError
from homeserver.rooms.auth.ids import is_valid_user_id
from homeserver.rooms.auth.power_levels import Power, as_level, is_creator

LEVEL_KEYS: Final = (
    "users_default",
    "events_default",
    "state_default",
    "ban",
    "redact",
    "kick",
    "invite",
)
_TABLE_KEYS: Final = ("events", "notifications")
# Before v6 only "events" entries are checked for alterations.
_TABLE_KEYS_BEFORE_V6: Final = ("events",)
_NO_TABLE: Final[Mapping[str, Any]] = {}


def check_power_levels_content(content: Mapping[str, Any], room_version: RoomVersion) -> None:
    """Rules .1 to .3 (v10+): every level is an integer; ``users`` maps valid
    user ids to levels. Before v10 only the ``users`` rule exists (v1/v3/v8
    auth rules 9.1/10.1), with string and (v1-v5) float levels accepted."""
    if not room_version.strict_integer_power_levels:
        if room_version.floaty_power_levels:
            _check_finite(content)
        _check_users_content(content, room_version)
        return
    for key in LEVEL_KEYS:
        if key in content and as_level(content[key], room_version) is None:
            raise AuthError(f"power level {key} is not an integer")
    for key in _TABLE_KEYS:
        if key in content:
            table = content[key]
            if not isinstance(table, dict) or not all(
                as_level(v, room_version) is not None for v in table.values()
            ):
                raise AuthError(f"power levels {key} is not an object of integers")
    _check_users_content(content, room_version)


def _check_finite(content: Mapping[str, Any]) -> None:
    """v1-floaty-power-levels: a float beyond binary64 (infinite, NaN) rejects the event."""
    values = [content.get(key) for key in LEVEL_KEYS]
    for key in (*_TABLE_KEYS, "users"):
        table = content.get(key)
        if isinstance(table, dict):
            values.extend(table.values())
    if any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise AuthError("power level is not a finite number")


def _check_users_content(content: Mapping[str, Any], room_version: RoomVersion) -> None:
    if "users" in content:
        users = content["users"]
        if not isinstance(users, dict):
            raise AuthError("power levels users is not an object")
        for user_id, level in users.items():
            if not is_valid_user_id(user_id) or as_level(level, room_version) is None:
                raise AuthError("power levels users has an invalid entry")


def check_power_levels(
    event: Event, current: Event | None, create: Event, sender_level: Power
) -> None:
    """The whole rule for a power levels event against the ``current`` one.

    ``sender_level`` is the sender's level under the current power levels.
    Returning means "allow".
    """
    rv = event.room_version
    new = event.content
    check_power_levels_content(new, rv)
    users = new.get("users")
    if rv.privileged_creators and isinstance(users, dict):  # v12 .4
        for user_id in users:
            if is_creator(user_id, create):
                raise AuthError("room creators cannot be listed in power levels users")
    if current is None:
        return  # v10/v11 .4, v12 .5: the first power levels event
    old = current.content
    old_rv = current.room_version
    for key in LEVEL_KEYS:  # v10/v11 .5, v12 .6
        old_level = _level_or_none(old.get(key), old_rv)
        new_level = _level_or_none(new.get(key), rv)
        if old_level != new_level:
            _check_alteration(old_level, new_level, sender_level, key)
    tables = _TABLE_KEYS if rv.limit_notifications_power_levels else _TABLE_KEYS_BEFORE_V6
    for key in tables:  # v10/v11 .6-.7, v12 .7-.8
        _check_table(_table(old, key), _table(new, key), old_rv, rv, sender_level, key)
    _check_users(_table(old, "users"), _table(new, "users"), old_rv, rv, sender_level, event.sender)


def _level_or_none(value: object, rv: RoomVersion) -> int | None:
    return None if value is None else as_level(value, rv)


def _table(content: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    table = content.get(key)
    return table if isinstance(table, dict) else _NO_TABLE


def _check_alteration(
    old_level: int | None, new_level: int | None, sender_level: Power, name: str
) -> None:
    """Neither the current nor the new value may be above the sender's level."""
    if old_level is not None and old_level > sender_level:
        raise AuthError(f"sender cannot change {name}: current level is above theirs")
    if new_level is not None and new_level > sender_level:
        raise AuthError(f"sender cannot set {name} above their own level")


def _check_table(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    old_rv: RoomVersion,
    rv: RoomVersion,
    sender_level: Power,
    name: str,
) -> None:
    """Entries of ``events`` or ``notifications`` added, changed or removed."""
    for key, old_value in old.items():
        old_level = as_level(old_value, old_rv)
        new_level = _level_or_none(new.get(key), rv)
        if old_level != new_level:
            _check_alteration(old_level, new_level, sender_level, name)
    for key, new_value in new.items():
        if key not in old:
            _check_alteration(None, as_level(new_value, rv), sender_level, name)


def _check_users(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    old_rv: RoomVersion,
    rv: RoomVersion,
    sender_level: Power,
    sender: str,
) -> None:
    """Entries of ``users``: another user's current level must be below the
    sender's; no new level may be above it."""
    for user_id, old_value in old.items():
        old_level = as_level(old_value, old_rv)
        new_level = _level_or_none(new.get(user_id), rv)
        if old_level == new_level:
            continue
        if user_id != sender and old_level is not None and old_level >= sender_level:
            raise AuthError("sender cannot change the level of a user at or above their own")
        if new_level is not None and new_level > sender_level:
            raise AuthError("sender cannot raise a user above their own level")
    for user_id, new_value in new.items():
        if user_id not in old:
            new_level = as_level(new_value, rv)
            if new_level is not None and new_level > sender_level:
                raise AuthError("sender cannot raise a user above their own level")
