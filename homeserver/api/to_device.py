"""Client API: /sendToDevice (spec: "Send-to-Device messaging")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response


class ToDeviceApi:
    def __init__(self, to_device: ToDeviceService, auth: Authenticator) -> None:
        self.to_device = to_device
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        return client_routes("PUT", "/sendToDevice/{eventType}/{txnId}", self.send)

    async def send(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        body = await json_body(request)
        await self.to_device.send(
            requester.user_id,
            requester.device_id,
            request.match_info["eventType"],
            request.match_info["txnId"],
            body.get("messages"),
        )
        return json_response({})
