"""Client API: GET /sync (spec: "Syncing")."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.http import client_routes, json_response, query_int
from homeserver.errors import MatrixError
from homeserver.rooms.filters import EventFilter
from homeserver.sync.builder import SyncBuilder, SyncRequest
from homeserver.sync.tokens import StreamToken

MAX_TIMEOUT_MS = 5 * 60 * 1000


def _timeline_filter(raw: str | None) -> EventFilter:
    """The room timeline part of an inline filter; filter ids are not resolved yet."""
    if raw is None or not raw.lstrip().startswith("{"):
        return EventFilter()
    try:
        obj: Any = json.loads(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", "filter is not valid JSON") from None
    room = obj.get("room") if isinstance(obj, dict) else None
    timeline = room.get("timeline") if isinstance(room, dict) else None
    return EventFilter.from_json(timeline)


class SyncApi:
    def __init__(self, auth: Authenticator, builder: SyncBuilder) -> None:
        self.auth = auth
        self.builder = builder

    def routes(self) -> list[web.RouteDef]:
        return client_routes("GET", "/sync", self.sync)

    async def sync(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        since = request.query.get("since")
        full_state = request.query.get("full_state", "false")
        if full_state not in ("true", "false"):
            raise MatrixError(400, "M_INVALID_PARAM", "full_state must be true or false")
        req = SyncRequest(
            user_id=requester.user_id,
            device_id=requester.device_id,
            since=StreamToken.parse(since) if since else None,
            timeout_ms=query_int(request, "timeout", 0, 0, MAX_TIMEOUT_MS),
            full_state=full_state == "true",
            timeline=_timeline_filter(request.query.get("filter")),
        )
        return json_response(await self.builder.sync(req))
