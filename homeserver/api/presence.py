"""Client API: ``/presence/{userId}/status`` (spec: "Presence")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.errors import bad_json, forbidden, invalid_param
from homeserver.http.bodies import json_body, opt_str
from homeserver.http.shell import json_response
from homeserver.userdata.presence import STATES, PresenceService


class PresenceApi:
    def __init__(self, presence: PresenceService, auth: Authenticator) -> None:
        self.presence = presence
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/presence/{userId}/status", self.get_status),
            *client_routes("PUT", "/presence/{userId}/status", self.put_status),
        ]

    async def get_status(self, request: web.Request) -> web.Response:
        await self.auth.requester(request, allow_guest=True)
        return json_response(await self.presence.get_status(request.match_info["userId"]))

    async def put_status(self, request: web.Request) -> web.Response:
        r = await self.auth.requester(request, allow_guest=True)
        if request.match_info["userId"] != r.user_id:
            raise forbidden("Cannot set presence state for other users.")
        body = await json_body(request)
        state = body.get("presence")
        if not isinstance(state, str):
            raise bad_json("'presence' is required and must be a string")
        if state not in STATES:
            raise invalid_param(f"'presence' must be one of {', '.join(STATES)}")
        status_msg = opt_str(body, "status_msg")
        await self.presence.set_status(r.user_nid, r.user_id, state, status_msg)
        return json_response({})
