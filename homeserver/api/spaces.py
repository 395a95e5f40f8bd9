"""Client API: ``GET /_matrix/client/v1/rooms/{roomId}/hierarchy`` (spec: "Spaces")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.errors import invalid_param
from homeserver.http.shell import json_response
from homeserver.rooms.hierarchy import (
    DEFAULT_LIMIT,
    MAX_DEPTH,
    MAX_LIMIT,
    SpaceHierarchy,
    parse_bool,
)

PATH = "/_matrix/client/v1/rooms/{room_id}/hierarchy"


def _int(raw: str | None, name: str, lo: int) -> int | None:
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 9 or int(raw) < lo:
        raise invalid_param(f"{name} must be an integer of at least {lo}")
    return int(raw)


class SpacesApi:
    def __init__(self, auth: Authenticator, hierarchy: SpaceHierarchy) -> None:
        self.auth = auth
        self.hierarchy = hierarchy

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PATH, self.get_hierarchy)]

    async def get_hierarchy(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        q = request.query
        limit = _int(q.get("limit"), "limit", 1)
        depth = _int(q.get("max_depth"), "max_depth", 0)
        answer = await self.hierarchy.for_user(
            requester.user_id,
            request.match_info["room_id"],
            q.get("from"),
            min(limit or DEFAULT_LIMIT, MAX_LIMIT),
            min(depth, MAX_DEPTH) if depth is not None else None,
            parse_bool(q.get("suggested_only"), "suggested_only"),
        )
        return json_response(answer)
