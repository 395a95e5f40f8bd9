"""RoomEventFilter (client-server "Filtering"): which events a client asked for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.errors import MatrixError, bad_json
from homeserver.events.model import Event


def _glob(pattern: str, value: str) -> bool:
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return pattern == value


def _str_list(obj: dict[str, Any], key: str) -> list[str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"filter '{key}' must be a list of strings")
    return value


@dataclass(frozen=True, slots=True)
class EventFilter:
    types: list[str] | None = None
    not_types: list[str] | None = None
    senders: list[str] | None = None
    not_senders: list[str] | None = None
    limit: int | None = None
    lazy_load_members: bool = False

    @classmethod
    def from_json(cls, obj: Any) -> EventFilter:
        if obj is None:
            return cls()
        if not isinstance(obj, dict):
            raise bad_json("filter must be an object")
        limit = obj.get("limit")
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise bad_json("filter 'limit' must be an integer")
        return cls(
            types=_str_list(obj, "types"),
            not_types=_str_list(obj, "not_types"),
            senders=_str_list(obj, "senders"),
            not_senders=_str_list(obj, "not_senders"),
            limit=None if limit is None else max(0, limit),
            lazy_load_members=bool(obj.get("lazy_load_members", False)),
        )

    @classmethod
    def from_query(cls, raw: str | None) -> EventFilter:
        if raw is None or raw == "":
            return cls()
        try:
            obj = json.loads(raw)
        except ValueError:
            raise MatrixError(400, "M_INVALID_PARAM", "filter is not valid JSON") from None
        return cls.from_json(obj)

    def matches(self, event: Event) -> bool:
        if self.types is not None and not any(_glob(p, event.type) for p in self.types):
            return False
        if self.not_types and any(_glob(p, event.type) for p in self.not_types):
            return False
        if self.senders is not None and event.sender not in self.senders:
            return False
        return not (self.not_senders and event.sender in self.not_senders)
