"""Client API endpoints for application services (spec: Application Service API,
"Pinging" via ``POST /_matrix/client/v1/appservice/{appserviceId}/ping``)."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.appservices.service import AppServices
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response


class AppServiceApi:
    def __init__(self, auth: Authenticator, app_services: AppServices) -> None:
        self.auth = auth
        self.app_services = app_services

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_matrix/client/v1/appservice/{appserviceId}/ping", self.ping),
        ]

    async def ping(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        duration_ms = await self.app_services.ping(
            requester, request.match_info["appserviceId"], body
        )
        return json_response({"duration_ms": duration_ms})
