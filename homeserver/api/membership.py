"""Client API: room membership (spec: "Room membership")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.http.bodies import json_body, opt_str, req_str
from homeserver.http.shell import json_response
from homeserver.rooms.membership import MembershipService, custom_member_content
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.third_party_invites import ThirdPartyInvites


def _via(request: web.Request) -> list[str]:
    """Servers to try a remote join/knock through: ``via`` (v1.12) and ``server_name``."""
    servers = [*request.query.getall("via", []), *request.query.getall("server_name", [])]
    return list(dict.fromkeys(s for s in servers if s))


class MembershipApi:
    def __init__(
        self,
        auth: Authenticator,
        memberships: MembershipService,
        reader: RoomReader,
        third_party: ThirdPartyInvites,
    ) -> None:
        self.auth = auth
        self.memberships = memberships
        self.reader = reader
        self.third_party = third_party

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("POST", "/join/{roomIdOrAlias}", self.join),
            *client_routes("POST", "/rooms/{roomIdOrAlias}/join", self.join),
            *client_routes("POST", "/knock/{roomIdOrAlias}", self.knock),
            *client_routes("POST", "/rooms/{roomId}/leave", self.leave),
            *client_routes("POST", "/rooms/{roomId}/forget", self.forget),
            *client_routes("POST", "/rooms/{roomId}/invite", self.invite),
            *client_routes("POST", "/rooms/{roomId}/kick", self.kick),
            *client_routes("POST", "/rooms/{roomId}/ban", self.ban),
            *client_routes("POST", "/rooms/{roomId}/unban", self.unban),
            *client_routes("GET", "/joined_rooms", self.joined_rooms),
        ]

    async def join(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        body = await json_body(request, allow_empty=True)
        target = request.match_info["roomIdOrAlias"]
        signed = body.get("third_party_signed")
        if signed is not None:
            # Redeem the third-party invite first: the join then follows an invite.
            await self.third_party.join_with_signed(requester.user_id, target, signed)
        room_id = await self.memberships.join(
            requester.user_id,
            target,
            opt_str(body, "reason"),
            _via(request),
            is_guest=requester.is_guest,
            custom=custom_member_content(body),
        )
        return json_response({"room_id": room_id})

    async def knock(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        room_id = await self.memberships.knock(
            requester.user_id,
            request.match_info["roomIdOrAlias"],
            opt_str(body, "reason"),
            _via(request),
        )
        return json_response({"room_id": room_id})

    async def leave(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        body = await json_body(request, allow_empty=True)
        await self.memberships.leave(
            requester.user_id, request.match_info["roomId"], opt_str(body, "reason")
        )
        return json_response({})

    async def forget(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        await self.memberships.forget(requester.user_id, request.match_info["roomId"])
        return json_response({})

    async def invite(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        room_id = request.match_info["roomId"]
        if "user_id" not in body and "id_server" in body:
            # Spec: the third-party form, {id_server, id_access_token, medium, address}.
            await self.third_party.invite(
                requester.user_id,
                room_id,
                req_str(body, "id_server"),
                req_str(body, "id_access_token"),
                req_str(body, "medium"),
                req_str(body, "address"),
            )
            return json_response({})
        await self.memberships.invite(
            requester.user_id, room_id, req_str(body, "user_id"), opt_str(body, "reason")
        )
        return json_response({})

    async def kick(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        await self.memberships.kick(
            requester.user_id,
            request.match_info["roomId"],
            req_str(body, "user_id"),
            opt_str(body, "reason"),
        )
        return json_response({})

    async def ban(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        await self.memberships.ban(
            requester.user_id,
            request.match_info["roomId"],
            req_str(body, "user_id"),
            opt_str(body, "reason"),
        )
        return json_response({})

    async def unban(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        await self.memberships.unban(
            requester.user_id,
            request.match_info["roomId"],
            req_str(body, "user_id"),
            opt_str(body, "reason"),
        )
        return json_response({})

    async def joined_rooms(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        return json_response({"joined_rooms": await self.reader.joined_rooms(requester.user_id)})
