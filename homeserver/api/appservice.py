"""Client API endpoints backed by application services: pinging a service (spec AS API
"Pinging", ``POST /_matrix/client/v1/appservice/{appserviceId}/ping``), the third-party
network look-ups (spec "Third-party Networks") and a service's own room directory
(``PUT /directory/list/appservice/{networkId}/{roomId}``)."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.appservices.service import AppServices
from homeserver.appservices.thirdparty import ThirdPartyLookup
from homeserver.errors import forbidden
from homeserver.http.bodies import json_body, req_str
from homeserver.http.shell import json_response
from homeserver.rooms.directory import RoomDirectory


class AppServiceApi:
    def __init__(
        self, auth: Authenticator, app_services: AppServices, directory: RoomDirectory
    ) -> None:
        self.auth = auth
        self.app_services = app_services
        self.thirdparty = ThirdPartyLookup(app_services)
        self.directory = directory

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_matrix/client/v1/appservice/{appserviceId}/ping", self.ping),
            *client_routes("GET", "/thirdparty/protocols", self.protocols),
            *client_routes("GET", "/thirdparty/protocol/{protocol}", self.protocol),
            *client_routes("GET", "/thirdparty/location/{protocol}", self.location),
            *client_routes("GET", "/thirdparty/user/{protocol}", self.user),
            *client_routes("GET", "/thirdparty/location", self.location),
            *client_routes("GET", "/thirdparty/user", self.user),
            *client_routes(
                "PUT", "/directory/list/appservice/{networkId}/{roomId}", self.list_room
            ),
        ]

    async def ping(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        duration_ms = await self.app_services.ping(
            requester, request.match_info["appserviceId"], body
        )
        return json_response({"duration_ms": duration_ms})

    async def protocols(self, request: web.Request) -> web.Response:
        await self.auth.requester(request)
        return json_response(await self.thirdparty.protocols())

    async def protocol(self, request: web.Request) -> web.Response:
        await self.auth.requester(request)
        return json_response(await self.thirdparty.one_protocol(request.match_info["protocol"]))

    async def location(self, request: web.Request) -> web.Response:
        return await self._lookup(request, "location")

    async def user(self, request: web.Request) -> web.Response:
        return await self._lookup(request, "user")

    async def _lookup(self, request: web.Request, kind: str) -> web.Response:
        await self.auth.requester(request)
        fields = {k: v for k, v in request.query.items() if k != "access_token"}
        found = await self.thirdparty.lookup(kind, request.match_info.get("protocol"), fields)
        return json_response(found)

    async def list_room(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        if requester.app_service_id is None:
            raise forbidden("Only application services may use this endpoint")
        body = await json_body(request)
        await self.directory.set_network_visibility(
            requester.app_service_id,
            request.match_info["networkId"],
            request.match_info["roomId"],
            req_str(body, "visibility"),
        )
        return json_response({})
