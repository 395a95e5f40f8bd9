"""Client API: /messages, /context, /members, /joined_members (spec: "Room events")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.errors import invalid_param
from homeserver.http.bodies import query_int
from homeserver.http.shell import json_response
from homeserver.rooms.filters import EventFilter
from homeserver.rooms.reading import RoomReader

_MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


class MessagesApi:
    def __init__(self, auth: Authenticator, reader: RoomReader) -> None:
        self.auth = auth
        self.reader = reader

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/rooms/{roomId}/messages", self.messages),
            *client_routes("GET", "/rooms/{roomId}/context/{eventId}", self.context),
            *client_routes("GET", "/rooms/{roomId}/members", self.members),
            *client_routes("GET", "/rooms/{roomId}/joined_members", self.joined_members),
        ]

    async def messages(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        direction = request.query.get("dir", "b")
        if direction not in ("b", "f"):
            raise invalid_param("'dir' must be 'b' or 'f'")
        flt = EventFilter.from_query(request.query.get("filter"))
        limit = query_int(request, "limit", flt.limit or 10, 1, 1000)
        answer = await self.reader.messages(
            requester.user_id,
            requester.device_id,
            request.match_info["roomId"],
            from_token=request.query.get("from"),
            to_token=request.query.get("to"),
            backwards=direction == "b",
            limit=limit,
            flt=flt,
        )
        return json_response(answer)

    async def context(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        flt = EventFilter.from_query(request.query.get("filter"))
        limit = query_int(request, "limit", 10, 0, 1000)
        answer = await self.reader.context(
            requester.user_id,
            requester.device_id,
            request.match_info["roomId"],
            request.match_info["eventId"],
            limit,
            flt,
        )
        return json_response(answer)

    async def members(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        membership = request.query.get("membership")
        not_membership = request.query.get("not_membership")
        for value in (membership, not_membership):
            if value is not None and value not in _MEMBERSHIPS:
                raise invalid_param("Unknown membership value")
        chunk = await self.reader.members_json(
            requester.user_id,
            request.match_info["roomId"],
            request.query.get("at"),
            membership,
            not_membership,
        )
        return json_response({"chunk": chunk})

    async def joined_members(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        joined = await self.reader.joined_members(requester.user_id, request.match_info["roomId"])
        return json_response({"joined": joined})
