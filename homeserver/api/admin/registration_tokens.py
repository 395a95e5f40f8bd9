"""Registration tokens: the admin CRUD at /_synapse/admin/v1/registration_tokens and
the client API's validity check (spec "Token-authenticated registration")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.registration_tokens import RegistrationTokens
from homeserver.api.admin.common import ADMIN_V1, query_flag, require_admin
from homeserver.errors import missing_param
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.net import client_ip
from homeserver.ratelimit import RateLimiter

TOKENS = ADMIN_V1 + "/registration_tokens"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"


class RegistrationTokensApi:
    def __init__(
        self, auth: Authenticator, tokens: RegistrationTokens, limiter: RateLimiter
    ) -> None:
        self.auth = auth
        self.tokens = tokens
        self.limiter = limiter

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(TOKENS, self.list_tokens),
            web.post(TOKENS + "/new", self.create),
            web.get(TOKENS + "/{token}", self.get_token),
            web.put(TOKENS + "/{token}", self.update),
            web.delete(TOKENS + "/{token}", self.delete),
            web.get(VALIDITY, self.validity),
        ]

    async def list_tokens(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        found = await self.tokens.list(query_flag(request, "valid", None))
        return json_response({"registration_tokens": [t.to_json() for t in found]})

    async def create(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        token = await self.tokens.create(await json_body(request, allow_empty=True))
        return json_response(token.to_json())

    async def get_token(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        return json_response((await self.tokens.get(request.match_info["token"])).to_json())

    async def update(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        body = await json_body(request, allow_empty=True)
        token = await self.tokens.update(request.match_info["token"], body)
        return json_response(token.to_json())

    async def delete(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        await self.tokens.delete(request.match_info["token"])
        return json_response({})

    async def validity(self, request: web.Request) -> web.Response:
        """Unauthenticated, so rate-limited per client address like registration."""
        self.limiter.check("per_ip", client_ip(request))
        token = request.query.get("token")
        if token is None:
            raise missing_param("'token' is required")
        return json_response({"valid": await self.tokens.is_valid(token)})
