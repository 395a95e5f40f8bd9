"""Client API: ``GET /pushers`` and ``POST /pushers/set`` (spec: "Push Notifications")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.push.pushers import PusherService


class PushersApi:
    def __init__(self, auth: Authenticator, pushers: PusherService) -> None:
        self.auth = auth
        self.pushers = pushers

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/pushers", self.get_pushers),
            *client_routes("POST", "/pushers/set", self.set_pusher),
        ]

    async def get_pushers(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        return json_response({"pushers": await self.pushers.pushers(requester.user_id)})

    async def set_pusher(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        await self.pushers.set_pusher(requester.user_id, requester.device_id, body)
        return json_response({})
