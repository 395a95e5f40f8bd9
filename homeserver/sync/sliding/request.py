"""The body of a simplified sliding sync request (MSC4186), checked into plain data.

Pure: no I/O. Every malformed field is refused with 400 ``M_INVALID_PARAM``
naming it, before anything is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import invalid_param

MAX_LISTS = 50
MAX_RANGES = 10
MAX_RANGE_END = 100_000
MAX_TIMELINE = 100
MAX_REQUIRED_STATE = 100
MAX_SUBSCRIPTIONS = 500
MAX_CONN_ID = 256
MAX_TO_DEVICE = 1000
DEFAULT_TO_DEVICE = 100

StatePair = tuple[str, str]


@dataclass(frozen=True)
class RoomParams:
    """What to send for a room: its required state and how many timeline events."""

    required_state: tuple[StatePair, ...] = ()
    timeline_limit: int = 0

    def merge(self, other: RoomParams) -> RoomParams:
        """A room in several lists/subscriptions gets the union of what each asks."""
        pairs = dict.fromkeys((*self.required_state, *other.required_state))
        return RoomParams(tuple(pairs), max(self.timeline_limit, other.timeline_limit))

    def to_json(self) -> dict[str, Any]:
        return {
            "required_state": [list(p) for p in self.required_state],
            "timeline_limit": self.timeline_limit,
        }


@dataclass(frozen=True)
class ListFilters:
    is_dm: bool | None = None
    is_encrypted: bool | None = None
    is_invite: bool | None = None
    room_types: tuple[str | None, ...] | None = None
    not_room_types: tuple[str | None, ...] = ()
    spaces: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ListConfig:
    ranges: tuple[tuple[int, int], ...]
    params: RoomParams
    filters: ListFilters


@dataclass(frozen=True)
class ExtensionConfig:
    """One extension: ``enabled``, and for the per-room ones which lists/rooms it covers
    (``None``: every list / every subscription)."""

    enabled: bool = False
    lists: tuple[str, ...] | None = None
    rooms: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Extensions:
    to_device: ExtensionConfig = ExtensionConfig()
    to_device_since: int | None = None
    to_device_limit: int = DEFAULT_TO_DEVICE
    e2ee: ExtensionConfig = ExtensionConfig()
    account_data: ExtensionConfig = ExtensionConfig()
    receipts: ExtensionConfig = ExtensionConfig()
    typing: ExtensionConfig = ExtensionConfig()


@dataclass(frozen=True)
class SlidingRequest:
    conn_id: str = ""
    lists: dict[str, ListConfig] = field(default_factory=dict)
    room_subscriptions: dict[str, RoomParams] = field(default_factory=dict)
    unsubscribe_rooms: tuple[str, ...] = ()
    extensions: Extensions = Extensions()


def _obj(value: Any, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise invalid_param(f"{name} must be an object")
    return value


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise invalid_param(f"{name} must be an integer from {lo} to {hi}")
    return value


def _opt_bool(value: Any, name: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise invalid_param(f"{name} must be a boolean")
    return value


def _str_list(value: Any, name: str, nullable: bool = False) -> tuple[Any, ...]:
    if not isinstance(value, list) or len(value) > MAX_SUBSCRIPTIONS:
        raise invalid_param(f"{name} must be a list of strings")
    for v in value:
        if not (isinstance(v, str) or (nullable and v is None)):
            raise invalid_param(f"{name} must be a list of strings")
    return tuple(value)


def parse_params(body: dict[str, Any], name: str) -> RoomParams:
    raw = body.get("required_state", [])
    if not isinstance(raw, list) or len(raw) > MAX_REQUIRED_STATE:
        raise invalid_param(f"{name}.required_state must be a list of [type, state_key]")
    pairs: list[StatePair] = []
    for p in raw:
        if not (isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)):
            raise invalid_param(f"{name}.required_state must be a list of [type, state_key]")
        pairs.append((p[0], p[1]))
    limit = _int(body.get("timeline_limit", 0), f"{name}.timeline_limit", 0, MAX_TIMELINE)
    return RoomParams(tuple(dict.fromkeys(pairs)), limit)


def _filters(raw: dict[str, Any], name: str) -> ListFilters:
    room_types = raw.get("room_types")
    spaces = raw.get("spaces")
    return ListFilters(
        is_dm=_opt_bool(raw.get("is_dm"), f"{name}.is_dm"),
        is_encrypted=_opt_bool(raw.get("is_encrypted"), f"{name}.is_encrypted"),
        is_invite=_opt_bool(raw.get("is_invite"), f"{name}.is_invite"),
        room_types=(
            None if room_types is None else _str_list(room_types, f"{name}.room_types", True)
        ),
        not_room_types=_str_list(
            raw.get("not_room_types", []), f"{name}.not_room_types", nullable=True
        ),
        spaces=None if spaces is None else _str_list(spaces, f"{name}.spaces"),
    )


def _list(raw: Any, name: str) -> ListConfig:
    body = _obj(raw, name)
    ranges_raw = body.get("ranges", [])
    if not isinstance(ranges_raw, list) or len(ranges_raw) > MAX_RANGES:
        raise invalid_param(f"{name}.ranges must be a list of [start, end]")
    ranges: list[tuple[int, int]] = []
    for r in ranges_raw:
        if not (isinstance(r, list) and len(r) == 2):
            raise invalid_param(f"{name}.ranges must be a list of [start, end]")
        start = _int(r[0], f"{name}.ranges", 0, MAX_RANGE_END)
        end = _int(r[1], f"{name}.ranges", 0, MAX_RANGE_END)
        if end < start:
            raise invalid_param(f"{name}.ranges: end before start")
        ranges.append((start, end))
    filters = _filters(_obj(body.get("filters"), f"{name}.filters"), f"{name}.filters")
    return ListConfig(tuple(ranges), parse_params(body, name), filters)


def _extension(raw: Any, name: str) -> ExtensionConfig:
    body = _obj(raw, name)
    lists, rooms = body.get("lists"), body.get("rooms")
    return ExtensionConfig(
        enabled=bool(_opt_bool(body.get("enabled"), f"{name}.enabled")),
        lists=None if lists is None else _str_list(lists, f"{name}.lists"),
        rooms=None if rooms is None else _str_list(rooms, f"{name}.rooms"),
    )


def _extensions(raw: dict[str, Any]) -> Extensions:
    td = _obj(raw.get("to_device"), "extensions.to_device")
    since = td.get("since")
    if since is not None and not (isinstance(since, str) and since.isdigit() and len(since) < 19):
        raise invalid_param("extensions.to_device.since is not a to-device token")
    limit = td.get("limit", DEFAULT_TO_DEVICE)
    return Extensions(
        to_device=_extension(td, "extensions.to_device"),
        to_device_since=None if since is None else int(since),
        to_device_limit=_int(limit, "extensions.to_device.limit", 1, MAX_TO_DEVICE),
        e2ee=_extension(raw.get("e2ee"), "extensions.e2ee"),
        account_data=_extension(raw.get("account_data"), "extensions.account_data"),
        receipts=_extension(raw.get("receipts"), "extensions.receipts"),
        typing=_extension(raw.get("typing"), "extensions.typing"),
    )


def parse_request(body: dict[str, Any]) -> SlidingRequest:
    conn_id = body.get("conn_id", "")
    if conn_id is None:
        conn_id = ""
    if not isinstance(conn_id, str) or len(conn_id) > MAX_CONN_ID:
        raise invalid_param("conn_id must be a string")
    lists_raw = _obj(body.get("lists"), "lists")
    if len(lists_raw) > MAX_LISTS:
        raise invalid_param(f"At most {MAX_LISTS} lists")
    lists = {k: _list(v, f"lists.{k}") for k, v in lists_raw.items()}
    subs_raw = _obj(body.get("room_subscriptions"), "room_subscriptions")
    if len(subs_raw) > MAX_SUBSCRIPTIONS:
        raise invalid_param(f"At most {MAX_SUBSCRIPTIONS} room subscriptions")
    subs: dict[str, RoomParams] = {}
    for room_id, raw in subs_raw.items():
        if not room_id.startswith("!"):
            raise invalid_param("room_subscriptions keys must be room ids")
        subs[room_id] = parse_params(_obj(raw, "room_subscriptions"), "room_subscriptions")
    unsub = _str_list(body.get("unsubscribe_rooms", []), "unsubscribe_rooms")
    return SlidingRequest(
        conn_id=conn_id,
        lists=lists,
        room_subscriptions=subs,
        unsubscribe_rooms=unsub,
        extensions=_extensions(_obj(body.get("extensions"), "extensions")),
    )
