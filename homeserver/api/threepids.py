"""Client API: email requestToken endpoints, /account/3pid/*, and the link mailed to
users (spec: "Adding Account Administrative Contact Information"). The homeserver
validates email itself; binding an address on an identity server (and removing
that binding) goes through ``BindingService``."""

from __future__ import annotations

import html
from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.service import AccountService
from homeserver.accounts.threepids import (
    SUBMIT_TOKEN_PATH,
    ThreepidService,
    medium_not_supported,
)
from homeserver.accounts.uia import UiaService
from homeserver.api.routes import client_routes
from homeserver.errors import MatrixError, invalid_param
from homeserver.http.bodies import json_body, opt_str, req_str
from homeserver.http.shell import json_response
from homeserver.identity.bindings import SUCCESS as UNBOUND
from homeserver.identity.bindings import BindingService
from homeserver.net import client_ip
from homeserver.ratelimit import RateLimiter

_MEDIA = ("email", "msisdn")
MAX_SEND_ATTEMPT = 2**53
UNSTABLE = "/_matrix/client/unstable"


class ThreepidApi:
    def __init__(
        self,
        accounts: AccountService,
        threepids: ThreepidService,
        bindings: BindingService,
        auth: Authenticator,
        uia: UiaService,
        limiter: RateLimiter,
    ) -> None:
        self.accounts = accounts
        self.threepids = threepids
        self.bindings = bindings
        self.auth = auth
        self.uia = uia
        self.limiter = limiter

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("POST", "/register/email/requestToken", self.register_token),
            *client_routes("POST", "/account/password/email/requestToken", self.password_token),
            *client_routes("POST", "/account/3pid/email/requestToken", self.add_token),
            *client_routes("POST", "/register/msisdn/requestToken", self.msisdn_token),
            *client_routes("POST", "/account/password/msisdn/requestToken", self.msisdn_token),
            *client_routes("POST", "/account/3pid/msisdn/requestToken", self.msisdn_token),
            *client_routes("GET", "/account/3pid", self.get_3pids),
            *client_routes("POST", "/account/3pid", self.post_3pid),
            *client_routes("POST", "/account/3pid/add", self.add_3pid),
            *client_routes("POST", "/account/3pid/bind", self.bind_3pid),
            *client_routes("POST", "/account/3pid/unbind", self.unbind_3pid),
            # Where they were first served (MSC2290); Synapse and Sytest still use these.
            web.post(UNSTABLE + "/account/3pid/bind", self.bind_3pid),
            web.post(UNSTABLE + "/account/3pid/unbind", self.unbind_3pid),
            *client_routes("POST", "/account/3pid/delete", self.delete_3pid),
            web.get(SUBMIT_TOKEN_PATH, self.submit_token_link),
            web.post(SUBMIT_TOKEN_PATH, self.submit_token),
        ]

    # ------------------------------------------------------------ requestToken

    async def register_token(self, request: web.Request) -> web.Response:
        return await self._request_token(request, "register")

    async def password_token(self, request: web.Request) -> web.Response:
        return await self._request_token(request, "password_reset")

    async def add_token(self, request: web.Request) -> web.Response:
        return await self._request_token(request, "add")

    async def _request_token(self, request: web.Request, purpose: str) -> web.Response:
        ip = client_ip(request)
        self.limiter.check("per_ip", ip)
        body = await json_body(request)
        client_secret = req_str(body, "client_secret")
        email = req_str(body, "email")
        send_attempt = body.get("send_attempt")
        if send_attempt is None:
            raise MatrixError(400, "M_MISSING_PARAM", "'send_attempt' is required")
        if isinstance(send_attempt, bool) or not isinstance(send_attempt, int):
            raise invalid_param("'send_attempt' must be an integer")
        if not 0 <= send_attempt <= MAX_SEND_ATTEMPT:
            raise invalid_param("'send_attempt' is out of range")
        opt_str(body, "next_link")
        if not self.threepids.enabled:
            raise medium_not_supported()
        self.limiter.check("threepid_validation", ip)
        self.limiter.check("threepid_validation", "email:" + email.strip().lower())
        sid = await self.threepids.request_email_token(purpose, email, client_secret, send_attempt)
        return json_response({"sid": sid, "submit_url": self.threepids.submit_url()})

    async def msisdn_token(self, request: web.Request) -> web.Response:
        """Phone numbers need an SMS gateway this server does not have."""
        await json_body(request)
        raise MatrixError(
            400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "This server does not validate phone numbers"
        )

    # ---------------------------------------------------------------- submit

    async def submit_token(self, request: web.Request) -> web.Response:
        """``submit_url``: the identity service's submitToken shape, on this server."""
        self.limiter.check("per_ip", client_ip(request))
        body = await json_body(request)
        await self.threepids.submit_token(
            req_str(body, "sid"), req_str(body, "client_secret"), req_str(body, "token")
        )
        return json_response({"success": True})

    async def submit_token_link(self, request: web.Request) -> web.Response:
        """The link in the mail, opened in a browser: a human-readable answer."""
        self.limiter.check("per_ip", client_ip(request))
        q = request.query
        try:
            sid, secret, token = q.get("sid"), q.get("client_secret"), q.get("token")
            if sid is None or secret is None or token is None:
                raise MatrixError(400, "M_MISSING_PARAM", "sid, client_secret and token needed")
            await self.threepids.submit_token(sid, secret, token)
        except MatrixError as e:
            return _page(e.status, "Validation failed", e.error)
        return _page(200, "Email address validated", "Return to your Matrix client to go on.")

    # ----------------------------------------------------------- account 3pids

    async def get_3pids(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        return json_response({"threepids": await self.threepids.list_for(requester.user_nid)})

    async def add_3pid(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        sid = req_str(body, "sid")
        client_secret = req_str(body, "client_secret")
        if not self.threepids.enabled:
            raise medium_not_supported()
        await self.accounts.require_password(
            self.uia, requester, body.get("auth"), "3pid_add:" + sid
        )
        await self.threepids.add_from_session(requester.user_nid, sid, client_secret)
        return json_response({})

    async def post_3pid(self, request: web.Request) -> web.Response:
        """Deprecated: credentials from an identity server, which this server does not use."""
        await self.auth.requester(request)
        body = await json_body(request)
        if not isinstance(body.get("three_pid_creds"), dict):
            raise MatrixError(400, "M_MISSING_PARAM", "'three_pid_creds' is required")
        raise MatrixError(
            403,
            "M_THREEPID_AUTH_FAILED",
            "This server does not use identity servers; use /account/3pid/add",
        )

    async def bind_3pid(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        client_secret = req_str(body, "client_secret")
        sid = req_str(body, "sid")
        id_server = _required(body, "id_server")
        token = _required(body, "id_access_token")
        await self.bindings.bind(requester.user_id, id_server, token, sid, client_secret)
        return json_response({})

    async def unbind_3pid(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        medium, address = _medium_address(body)
        id_server = opt_str(body, "id_server")
        result = await self.bindings.unbind(requester.user_id, medium, address, id_server)
        return json_response({"id_server_unbind_result": result})

    async def delete_3pid(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        medium, address = _medium_address(body)
        id_server = opt_str(body, "id_server")
        result = await self.bindings.unbind(requester.user_id, medium, address, id_server)
        await self.threepids.delete(
            requester.user_nid, medium, address, missing_ok=result == UNBOUND
        )
        return json_response({"id_server_unbind_result": result})


def _required(body: dict[str, Any], key: str) -> str:
    """A required string; its absence is M_MISSING_PARAM (as Synapse answers)."""
    value = opt_str(body, key)
    if value is None:
        raise MatrixError(400, "M_MISSING_PARAM", f"'{key}' is required")
    return value


def _medium_address(body: dict[str, Any]) -> tuple[str, str]:
    medium = req_str(body, "medium")
    if medium not in _MEDIA:
        raise invalid_param("'medium' must be email or msisdn")
    return medium, req_str(body, "address")


def _page(status: int, title: str, text: str) -> web.Response:
    page = (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return web.Response(status=status, text=page, content_type="text/html")
