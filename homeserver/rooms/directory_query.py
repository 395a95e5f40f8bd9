"""Reads a /publicRooms query (client and federation ask the same question).

Both APIs list the same directory with the same query fields, so the
checks live here, once, over plain data: the query string as a mapping,
the POST body as a decoded JSON object. Bad values become Matrix errors.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.rooms.directory import PublicRoomsQuery

MAX_LIMIT = 1000


def _opt_str(body: Mapping[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"'{key}' must be a string")
    if value is not None and "\x00" in value:
        raise invalid_param(f"'{key}' must not contain NUL characters")
    return value


def _limit_param(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "'limit' must be an integer") from None
    return max(0, min(MAX_LIMIT, value))


def public_rooms_query_from_params(
    params: Mapping[str, str], server: str | None
) -> PublicRoomsQuery:
    """``GET /publicRooms`` (client and federation): the query parameters."""
    limit = params.get("limit")
    return PublicRoomsQuery(
        limit=None if limit is None else _limit_param(limit),
        since=params.get("since"),
        server=server,
        include_all_networks=params.get("include_all_networks") == "true",
        third_party_instance_id=params.get("third_party_instance_id"),
    )


def public_rooms_query_from_body(body: dict[str, Any], server: str | None) -> PublicRoomsQuery:
    """``POST /publicRooms`` (client and federation): the JSON body."""
    limit = body.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
        raise bad_json("'limit' must be an integer")
    flt = body.get("filter")
    if flt is None:
        flt = {}
    elif not isinstance(flt, dict):
        raise bad_json("'filter' must be an object")
    room_types: Any = flt.get("room_types")
    if room_types is not None and (
        not isinstance(room_types, list)
        or not all(t is None or isinstance(t, str) for t in room_types)
    ):
        raise bad_json("'room_types' must be a list of strings or nulls")
    include_all = body.get("include_all_networks", False)
    if not isinstance(include_all, bool):
        raise bad_json("'include_all_networks' must be a boolean")
    return PublicRoomsQuery(
        limit=None if limit is None else max(0, min(limit, MAX_LIMIT)),
        since=_opt_str(body, "since"),
        server=server,
        search_term=_opt_str(flt, "generic_search_term"),
        room_types=room_types,
        include_all_networks=include_all,
        third_party_instance_id=_opt_str(body, "third_party_instance_id"),
    )
