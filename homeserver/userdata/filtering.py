"""Filters (spec: "Filtering"; schema ``Filter``, ``RoomFilter``, ``EventFilter``,
``RoomEventFilter``): parsing into frozen dataclasses, and pure match functions.

``parse_filter`` checks the JSON against the spec's schema and refuses wrong
types with 400 ``M_BAD_JSON`` and out-of-range values with 400
``M_INVALID_PARAM``. Unknown keys are ignored (the schema allows them).
The match functions take plain event dicts, so /sync, /messages and
/context share them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from homeserver.errors import bad_json, invalid_param
from homeserver.events.paths import is_missing, lookup, split_path


@dataclass(frozen=True, slots=True)
class EventFilter:
    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RoomEventFilter:
    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False


@dataclass(frozen=True, slots=True)
class RoomFilter:
    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    ephemeral: RoomEventFilter = field(default_factory=RoomEventFilter)
    state: RoomEventFilter = field(default_factory=RoomEventFilter)
    timeline: RoomEventFilter = field(default_factory=RoomEventFilter)
    account_data: RoomEventFilter = field(default_factory=RoomEventFilter)


@dataclass(frozen=True, slots=True)
class Filter:
    event_fields: tuple[str, ...] | None = None
    event_format: str = "client"
    presence: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)
    room: RoomFilter = field(default_factory=RoomFilter)


DEFAULT_FILTER = Filter()

# ------------------------------------------------------------------ parsing


def _obj(raw: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_json(f"'{where}{key}' must be an object")
    return value


def _str_list(
    raw: Mapping[str, Any], key: str, where: str, prefix: str = ""
) -> tuple[str, ...] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"'{where}{key}' must be an array of strings")
    if prefix and not all(v.startswith(prefix) for v in value):
        raise invalid_param(f"Every entry of '{where}{key}' must start with '{prefix}'")
    return tuple(value)


def _bool(raw: Mapping[str, Any], key: str, where: str) -> bool | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, bool):
        raise bad_json(f"'{where}{key}' must be a boolean")
    return value


def _limit(raw: Mapping[str, Any], where: str) -> int | None:
    value = raw.get("limit")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_json(f"'{where}limit' must be an integer")
    # The spec asks clients for a limit above 0; a timeline limit of 0 ("state
    # only, no events") is what Synapse accepts and clients send, so 0 is kept.
    if value < 0:
        raise invalid_param(f"'{where}limit' must not be negative")
    return value


def _event_filter_fields(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    return {
        "limit": _limit(raw, where),
        "types": _str_list(raw, "types", where),
        "not_types": _str_list(raw, "not_types", where) or (),
        "senders": _str_list(raw, "senders", where, "@"),
        "not_senders": _str_list(raw, "not_senders", where, "@") or (),
    }


def parse_event_filter(raw: Mapping[str, Any], where: str = "") -> EventFilter:
    return EventFilter(**_event_filter_fields(raw, where))


def parse_room_event_filter(raw: Mapping[str, Any], where: str = "") -> RoomEventFilter:
    return RoomEventFilter(
        **_event_filter_fields(raw, where),
        rooms=_str_list(raw, "rooms", where, "!"),
        not_rooms=_str_list(raw, "not_rooms", where, "!") or (),
        contains_url=_bool(raw, "contains_url", where),
        lazy_load_members=bool(_bool(raw, "lazy_load_members", where)),
        include_redundant_members=bool(_bool(raw, "include_redundant_members", where)),
        unread_thread_notifications=bool(_bool(raw, "unread_thread_notifications", where)),
    )


def parse_filter(raw: Any) -> Filter:
    """Check ``raw`` against the spec's ``Filter`` schema and return it parsed."""
    if not isinstance(raw, dict):
        raise bad_json("A filter must be a JSON object")
    event_format = raw.get("event_format", "client")
    if not isinstance(event_format, str):
        raise bad_json("'event_format' must be a string")
    if event_format not in ("client", "federation"):
        raise invalid_param("'event_format' must be 'client' or 'federation'")
    room = _obj(raw, "room", "")
    return Filter(
        event_fields=_str_list(raw, "event_fields", ""),
        event_format=event_format,
        presence=parse_event_filter(_obj(raw, "presence", ""), "presence."),
        account_data=parse_event_filter(_obj(raw, "account_data", ""), "account_data."),
        room=RoomFilter(
            rooms=_str_list(room, "rooms", "room.", "!"),
            not_rooms=_str_list(room, "not_rooms", "room.", "!") or (),
            include_leave=bool(_bool(room, "include_leave", "room.")),
            ephemeral=parse_room_event_filter(_obj(room, "ephemeral", "room."), "room.ephemeral."),
            state=parse_room_event_filter(_obj(room, "state", "room."), "room.state."),
            timeline=parse_room_event_filter(_obj(room, "timeline", "room."), "room.timeline."),
            account_data=parse_room_event_filter(
                _obj(room, "account_data", "room."), "room.account_data."
            ),
        ),
    )


# ----------------------------------------------------------------- matching


@lru_cache(maxsize=2048)
def _wildcard(pattern: str) -> re.Pattern[str]:
    """Filter patterns: ``*`` matches any run of characters; everything else is literal."""
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z", re.DOTALL)


def type_matches(pattern: str, event_type: str) -> bool:
    return _wildcard(pattern).match(event_type) is not None


def _any_type(patterns: Iterable[str], event_type: str) -> bool:
    return any(type_matches(p, event_type) for p in patterns)


def room_allowed(room_filter: RoomFilter, room_id: str) -> bool:
    """Whether ``room_id`` passes ``room.rooms`` / ``room.not_rooms`` (applied first)."""
    if room_id in room_filter.not_rooms:
        return False
    return room_filter.rooms is None or room_id in room_filter.rooms


def matches_everything(f: EventFilter | RoomEventFilter) -> bool:
    """Whether ``f`` passes every event (no list and no ``contains_url`` set), so that
    a caller may skip ``event_matches``: a big room's initial sync has thousands of
    state events to check against the usual, empty, state filter."""
    if f.types is not None or f.senders is not None or f.not_types or f.not_senders:
        return False
    if isinstance(f, RoomEventFilter):
        return f.rooms is None and not f.not_rooms and f.contains_url is None
    return True


def event_matches(f: EventFilter | RoomEventFilter, event: Mapping[str, Any]) -> bool:
    """Whether ``event`` (a client- or federation-format dict) passes filter ``f``.

    ``not_*`` lists win over their positive lists; an absent positive list
    allows everything. Presence events are matched by ``sender``; account
    data, which has no sender, is matched by type only.
    """
    event_type = event.get("type")
    if isinstance(event_type, str):
        if _any_type(f.not_types, event_type):
            return False
        if f.types is not None and not _any_type(f.types, event_type):
            return False
    elif f.types is not None:
        return False
    sender = event.get("sender")
    if isinstance(sender, str):
        if sender in f.not_senders:
            return False
        if f.senders is not None and sender not in f.senders:
            return False
    if isinstance(f, RoomEventFilter):
        room_id = event.get("room_id")
        if isinstance(room_id, str):
            if room_id in f.not_rooms:
                return False
            if f.rooms is not None and room_id not in f.rooms:
                return False
        if f.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, Mapping) and isinstance(content.get("url"), str)
            if has_url != f.contains_url:
                return False
    return True


def filter_events(
    f: EventFilter | RoomEventFilter, events: Iterable[Mapping[str, Any]]
) -> list[Mapping[str, Any]]:
    """The events that pass ``f``, in their order (``limit`` is the caller's)."""
    return [e for e in events if event_matches(f, e)]


def project_fields(event: Mapping[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    """Keep only the ``event_fields`` paths of ``event`` (``None`` keeps everything)."""
    if fields is None:
        return dict(event)
    out: dict[str, Any] = {}
    for path in fields:
        value = lookup(event, path)
        if is_missing(value):
            continue
        names = split_path(path)
        target = out
        for name in names[:-1]:
            nxt = target.get(name)
            if not isinstance(nxt, dict):
                nxt = {}
                target[name] = nxt
            target = nxt
        target[names[-1]] = value
    return out
