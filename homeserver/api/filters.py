"""Client API: ``/user/{userId}/filter`` (spec: "Filtering")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.requester import Requester
from homeserver.api.routes import client_routes
from homeserver.errors import forbidden
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.userdata.filters import FilterService


class FilterApi:
    def __init__(self, filters: FilterService, auth: Authenticator) -> None:
        self.filters = filters
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("POST", "/user/{userId}/filter", self.create),
            *client_routes("GET", "/user/{userId}/filter/{filterId}", self.get),
        ]

    async def _self(self, request: web.Request, action: str) -> Requester:
        requester = await self.auth.requester(request, allow_guest=True)
        if request.match_info["userId"] != requester.user_id:
            raise forbidden(f"Cannot {action} filters for other users.")
        return requester

    async def create(self, request: web.Request) -> web.Response:
        r = await self._self(request, "create")
        body = await json_body(request)
        filter_id = await self.filters.create(r.user_nid, body)
        return json_response({"filter_id": filter_id})

    async def get(self, request: web.Request) -> web.Response:
        r = await self._self(request, "get")
        return json_response(
            await self.filters.get_json(r.user_nid, request.match_info["filterId"])
        )
