"""Client API: ``POST /_matrix/client/v1/login/get_token`` (spec v1.7), served only when
``login_via_existing_session.enabled``; otherwise the route does not exist (404
M_UNRECOGNIZED), as for any optional endpoint a server does not offer."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.login_tokens import LoginTokens
from homeserver.accounts.service import AccountService
from homeserver.accounts.uia import UiaService
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.ratelimit import RateLimiter


class LoginTokenApi:
    def __init__(
        self,
        accounts: AccountService,
        tokens: LoginTokens,
        auth: Authenticator,
        uia: UiaService,
        limiter: RateLimiter,
    ) -> None:
        self.accounts = accounts
        self.tokens = tokens
        self.auth = auth
        self.uia = uia
        self.limiter = limiter

    def routes(self) -> list[web.RouteDef]:
        if not self.tokens.config.enabled:
            return []
        return [web.post("/_matrix/client/v1/login/get_token", self.get_token)]

    async def get_token(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        if self.tokens.config.require_ui_auth:
            # Spec: always re-prompt (the UIA session ends with this request).
            await self.accounts.require_password(
                self.uia, requester, body.get("auth"), "login_token"
            )
        # Counted once authenticated, so the 401 that starts UIA takes nothing.
        self.limiter.check("login_token", requester.user_id)
        token, lifetime = await self.tokens.mint(requester)
        return json_response({"login_token": token, "expires_in_ms": lifetime})
