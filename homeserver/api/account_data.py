"""Client API: account data and room tags (spec: "Client Config", "Room Tagging")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.requester import Requester
from homeserver.api.routes import client_routes
from homeserver.errors import bad_json, forbidden, invalid_param
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.userdata.account_data import AccountDataService


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["roomId"]
    if not room_id.startswith("!") or len(room_id) < 2:
        raise invalid_param("Not a valid room ID")
    return room_id


class AccountDataApi:
    def __init__(self, account_data: AccountDataService, auth: Authenticator) -> None:
        self.account_data = account_data
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        user = "/user/{userId}"
        room = user + "/rooms/{roomId}"
        return [
            *client_routes("GET", user + "/account_data/{type}", self.get_global),
            *client_routes("PUT", user + "/account_data/{type}", self.put_global),
            *client_routes("GET", room + "/account_data/{type}", self.get_room),
            *client_routes("PUT", room + "/account_data/{type}", self.put_room),
            *client_routes("GET", room + "/tags", self.get_tags),
            *client_routes("PUT", room + "/tags/{tag}", self.put_tag),
            *client_routes("DELETE", room + "/tags/{tag}", self.delete_tag),
        ]

    async def _self(self, request: web.Request, action: str) -> Requester:
        requester = await self.auth.requester(request, allow_guest=True)
        if request.match_info["userId"] != requester.user_id:
            raise forbidden(f"Cannot {action} for other users.")
        return requester

    async def get_global(self, request: web.Request) -> web.Response:
        r = await self._self(request, "get account data")
        content = await self.account_data.get(
            r.user_nid, r.user_id, None, request.match_info["type"]
        )
        return json_response(content)

    async def put_global(self, request: web.Request) -> web.Response:
        r = await self._self(request, "add account data")
        body = await json_body(request, allow_empty=False)
        await self.account_data.put(r.user_nid, r.user_id, None, request.match_info["type"], body)
        return json_response({})

    async def get_room(self, request: web.Request) -> web.Response:
        r = await self._self(request, "get account data")
        room_id = _room_id(request)
        content = await self.account_data.get(
            r.user_nid, r.user_id, room_id, request.match_info["type"]
        )
        return json_response(content)

    async def put_room(self, request: web.Request) -> web.Response:
        r = await self._self(request, "add account data")
        room_id = _room_id(request)
        body = await json_body(request)
        await self.account_data.put(
            r.user_nid, r.user_id, room_id, request.match_info["type"], body
        )
        return json_response({})

    async def get_tags(self, request: web.Request) -> web.Response:
        r = await self._self(request, "get tags")
        tags = await self.account_data.tags(r.user_nid, _room_id(request))
        return json_response({"tags": tags})

    async def put_tag(self, request: web.Request) -> web.Response:
        r = await self._self(request, "add tags")
        room_id = _room_id(request)
        body = await json_body(request)
        order = body.get("order")
        if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
            raise bad_json("'order' must be a number")
        await self.account_data.add_tag(
            r.user_nid, r.user_id, room_id, request.match_info["tag"], body
        )
        return json_response({})

    async def delete_tag(self, request: web.Request) -> web.Response:
        r = await self._self(request, "remove tags")
        await self.account_data.remove_tag(
            r.user_nid, r.user_id, _room_id(request), request.match_info["tag"]
        )
        return json_response({})
