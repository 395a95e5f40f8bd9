"""OpenID: ``POST /user/{userId}/openid/request_token`` (client API) and
``GET /_matrix/federation/v1/openid/userinfo`` (spec: server-server "OpenID").

userinfo is authenticated by the OpenID token alone, not by X-Matrix: the
caller is a third party, not a homeserver. It is served on the federation
listener, and on the client listener too (as Synapse does), where third
parties that only know the client URL look for it.
"""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.openid import OpenIdTokens
from homeserver.api.routes import client_routes
from homeserver.errors import MatrixError, forbidden
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response

MAX_TOKEN_LENGTH = 256


def unknown_token() -> MatrixError:
    return MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown or expired OpenID token")


class OpenIdApi:
    def __init__(self, auth: Authenticator, tokens: OpenIdTokens) -> None:
        self.auth = auth
        self.tokens = tokens

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("POST", "/user/{userId}/openid/request_token", self.request_token),
            *self.userinfo_routes(),
        ]

    def userinfo_routes(self) -> list[web.RouteDef]:
        return [web.get("/_matrix/federation/v1/openid/userinfo", self.userinfo)]

    async def request_token(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        if request.match_info["userId"] != requester.user_id:
            raise forbidden("You may only request OpenID tokens for yourself")
        await json_body(request, allow_empty=True)
        return json_response(await self.tokens.issue(requester.user_id))

    async def userinfo(self, request: web.Request) -> web.Response:
        token = request.query.get("access_token")
        if not token or len(token) > MAX_TOKEN_LENGTH:
            raise unknown_token()
        user_id = await self.tokens.user_for(token)
        if user_id is None:
            raise unknown_token()
        return json_response({"sub": user_id})
