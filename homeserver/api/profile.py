"""Client API: /profile/{userId} (spec: "Profiles")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.service import AccountService
from homeserver.api.routes import client_routes
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.http.bodies import json_body, opt_str
from homeserver.http.shell import json_response

_FIELDS = ("displayname", "avatar_url")


class ProfileApi:
    def __init__(self, accounts: AccountService, auth: Authenticator) -> None:
        self.accounts = accounts
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/profile/{userId}", self.get_profile),
            *client_routes("GET", "/profile/{userId}/{field}", self.get_field),
            *client_routes("PUT", "/profile/{userId}/{field}", self.put_field),
        ]

    async def get_profile(self, request: web.Request) -> web.Response:
        return json_response(await self.accounts.lookup_profile(request.match_info["userId"]))

    async def get_field(self, request: web.Request) -> web.Response:
        field = request.match_info["field"]
        if field not in _FIELDS:
            raise not_found(f"Unknown profile field {field}")
        profile = await self.accounts.lookup_profile(request.match_info["userId"])
        if field not in profile:
            raise not_found(f"The user has no {field}")
        return json_response({field: profile[field]})

    async def put_field(self, request: web.Request) -> web.Response:
        field = request.match_info["field"]
        if field not in _FIELDS:
            raise not_found(f"Unknown profile field {field}")
        requester = await self.auth.requester(request, allow_guest=True)
        if requester.is_guest and field != "displayname":
            # Spec "Guest access": guests may change their display name and nothing else.
            raise MatrixError(
                403, "M_GUEST_ACCESS_FORBIDDEN", "Guests may only change their display name"
            )
        if request.match_info["userId"] != requester.user_id:
            raise forbidden("You may only change your own profile")
        body = await json_body(request)
        value = opt_str(body, field)
        if field == "displayname":
            await self.accounts.set_displayname(requester, value)
        else:
            await self.accounts.set_avatar_url(requester, value)
        return json_response({})
