"""Client API: peeking into a world_readable room without joining it (MSC2753, unstable;
the paths Sytest 31sync/17peeking uses). See ``homeserver/sync/peeks.py``."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.sync.peeks import PeekService


class PeekApi:
    def __init__(self, auth: Authenticator, peeks: PeekService) -> None:
        self.auth = auth
        self.peeks = peeks

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("POST", "/peek/{roomIdOrAlias}", self.peek),
            *client_routes("POST", "/rooms/{roomId}/unpeek", self.unpeek),
        ]

    async def peek(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        await json_body(request, allow_empty=True)
        room_id = await self.peeks.peek(
            requester.user_id, requester.device_id or "", request.match_info["roomIdOrAlias"]
        )
        return json_response({"room_id": room_id})

    async def unpeek(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        await json_body(request, allow_empty=True)
        await self.peeks.unpeek(
            requester.user_id, requester.device_id or "", request.match_info["roomId"]
        )
        return json_response({})
