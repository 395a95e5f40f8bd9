"""Client API: POST /search (spec "Server Side Search") and
POST /user_directory/search (spec "User directory")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.errors import bad_json
from homeserver.http.bodies import json_body, opt_bool, opt_dict, req_str
from homeserver.http.shell import json_response
from homeserver.rooms.filters import EventFilter
from homeserver.rooms.search import DEFAULT_LIMIT, SearchRequest, SearchService
from homeserver.rooms.user_directory import UserDirectory


def _str_list(obj: dict[str, Any], key: str) -> list[str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise bad_json(f"'{key}' must be a list of strings")
    return value


def _int(obj: dict[str, Any], key: str, default: int, hi: int) -> int:
    value = obj.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad_json(f"'{key}' must be an integer")
    return max(0, min(value, hi))


def parse_search(body: dict[str, Any]) -> SearchRequest:
    categories = opt_dict(body, "search_categories")
    if categories is None:
        raise bad_json("'search_categories' is required")
    room_events = opt_dict(categories, "room_events")
    if room_events is None:
        raise bad_json("Only the room_events category is supported, and it is required")
    flt_obj = opt_dict(room_events, "filter") or {}
    context = opt_dict(room_events, "event_context")
    groupings = opt_dict(room_events, "groupings") or {}
    group_by = groupings.get("group_by", [])
    if not isinstance(group_by, list) or not all(
        isinstance(g, dict) and isinstance(g.get("key"), str) for g in group_by
    ):
        raise bad_json("'group_by' must be a list of {\"key\": ...}")
    order_by = room_events.get("order_by", "rank")
    if not isinstance(order_by, str):
        raise bad_json("'order_by' must be a string")
    flt = EventFilter.from_json(flt_obj)
    return SearchRequest(
        term=req_str(room_events, "search_term"),
        keys=_str_list(room_events, "keys") or [],
        flt=flt,
        rooms=_str_list(flt_obj, "rooms"),
        not_rooms=_str_list(flt_obj, "not_rooms") or [],
        order_by=order_by,
        before_limit=_int(context or {}, "before_limit", 5, 100),
        after_limit=_int(context or {}, "after_limit", 5, 100),
        include_profile=opt_bool(context or {}, "include_profile", False),
        with_context=context is not None,
        include_state=opt_bool(room_events, "include_state", False),
        group_by=[g["key"] for g in group_by],
        limit=min(flt.limit or DEFAULT_LIMIT, 100) or DEFAULT_LIMIT,
    )


class SearchApi:
    def __init__(self, auth: Authenticator, search: SearchService, users: UserDirectory) -> None:
        self.auth = auth
        self.search_service = search
        self.users = users

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("POST", "/search", self.search),
            *client_routes("POST", "/user_directory/search", self.user_directory),
        ]

    async def search(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        req = parse_search(await json_body(request))
        answer = await self.search_service.search(
            requester.user_id, requester.device_id, req, request.query.get("next_batch")
        )
        return json_response(answer)

    async def user_directory(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        term = req_str(body, "search_term")
        limit = _int(body, "limit", 10, 1000)
        return json_response(await self.users.search(requester.user_id, term, max(1, limit)))
