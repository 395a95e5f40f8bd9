"""Client API: room aliases (spec: "Room aliases", GET/PUT/DELETE /directory/room/{alias})."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.http.bodies import json_body, req_str
from homeserver.http.shell import json_response
from homeserver.rooms.aliases import AliasService


class DirectoryApi:
    def __init__(self, auth: Authenticator, aliases: AliasService) -> None:
        self.auth = auth
        self.aliases = aliases

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/directory/room/{roomAlias}", self.get_alias),
            *client_routes("PUT", "/directory/room/{roomAlias}", self.put_alias),
            *client_routes("DELETE", "/directory/room/{roomAlias}", self.delete_alias),
            *client_routes("GET", "/rooms/{roomId}/aliases", self.room_aliases),
        ]

    async def get_alias(self, request: web.Request) -> web.Response:
        room_id, servers = await self.aliases.resolve(request.match_info["roomAlias"])
        return json_response({"room_id": room_id, "servers": servers})

    async def put_alias(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        await self.aliases.create(
            requester.user_id, request.match_info["roomAlias"], req_str(body, "room_id")
        )
        return json_response({})

    async def delete_alias(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        await self.aliases.delete(requester, request.match_info["roomAlias"])
        return json_response({})

    async def room_aliases(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        aliases = await self.aliases.room_aliases(requester.user_id, request.match_info["roomId"])
        return json_response({"aliases": aliases})
