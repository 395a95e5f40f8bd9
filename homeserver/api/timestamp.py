"""Client API: ``GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`` ("jump to date")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.http.shell import json_response
from homeserver.rooms.timestamp import TimestampLookup, parse_query

PATH = "/_matrix/client/v1/rooms/{room_id}/timestamp_to_event"


class TimestampApi:
    def __init__(self, auth: Authenticator, lookup: TimestampLookup) -> None:
        self.auth = auth
        self.lookup = lookup

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PATH, self.get)]

    async def get(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        ts, direction = parse_query(request.query.get("ts"), request.query.get("dir"))
        room_id = request.match_info["room_id"]
        return json_response(await self.lookup.for_user(requester.user_id, room_id, ts, direction))
