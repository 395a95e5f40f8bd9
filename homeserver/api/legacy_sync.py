"""Client API: the deprecated sync endpoints the spec still defines: ``GET /events``,
``GET /initialSync``, ``GET /rooms/{roomId}/initialSync`` and ``GET /events/{eventId}``
(spec: "Legacy endpoints"). Views of /sync, see ``homeserver/sync/legacy.py``."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.requester import Requester
from homeserver.api.routes import client_routes
from homeserver.errors import invalid_param
from homeserver.http.bodies import query_int
from homeserver.http.shell import json_response
from homeserver.rooms.reading import RoomReader
from homeserver.sync.legacy import DEFAULT_INITIAL_SYNC_LIMIT, LegacySync
from homeserver.sync.model import MAX_TIMELINE_LIMIT, SyncRequest

MAX_TIMEOUT_MS = 5 * 60 * 1000


def _request(requester: Requester, timeout_ms: int = 0) -> SyncRequest:
    return SyncRequest(
        user_id=requester.user_id,
        device_id=requester.device_id,
        user_nid=requester.user_nid,
        is_guest=requester.is_guest,
        timeout_ms=timeout_ms,
    )


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false")
    if value not in ("true", "false"):
        raise invalid_param(f"'{name}' must be true or false")
    return value == "true"


class LegacySyncApi:
    def __init__(self, auth: Authenticator, legacy: LegacySync, reader: RoomReader) -> None:
        self.auth = auth
        self.legacy = legacy
        self.reader = reader

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/events", self.events),
            *client_routes("GET", "/events/{eventId}", self.event),
            *client_routes("GET", "/initialSync", self.initial_sync),
            *client_routes("GET", "/rooms/{roomId}/initialSync", self.room_initial_sync),
        ]

    async def events(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        timeout = query_int(request, "timeout", 0, 0, MAX_TIMEOUT_MS)
        limit = request.query.get("limit")
        if limit is not None and not limit.isdigit():
            raise invalid_param("'limit' must be a non-negative integer")
        answer = await self.legacy.events(
            _request(requester, timeout), request.query.get("from"), request.query.get("room_id")
        )
        return json_response(answer)

    async def event(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        answer = await self.reader.event_by_id(
            requester.user_id, requester.device_id, request.match_info["eventId"]
        )
        return json_response(answer)

    async def initial_sync(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        limit = query_int(request, "limit", DEFAULT_INITIAL_SYNC_LIMIT, 0, MAX_TIMELINE_LIMIT)
        answer = await self.legacy.initial_sync(
            _request(requester), limit, _flag(request, "archived")
        )
        return json_response(answer)

    async def room_initial_sync(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        limit = query_int(request, "limit", DEFAULT_INITIAL_SYNC_LIMIT, 0, MAX_TIMELINE_LIMIT)
        answer = await self.legacy.room_initial_sync(
            _request(requester), request.match_info["roomId"], limit
        )
        return json_response(answer)
