"""Shared-secret registration at /_synapse/admin/v1/register.

The format used by ``register_new_matrix_user`` and Complement: GET a
single-use nonce, then POST the account with
``mac = HMAC-SHA1(secret, nonce NUL username NUL password NUL admin|notadmin)``.
Enabled only when ``registration.shared_secret`` is set.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from homeserver.accounts.service import AccountService
from homeserver.errors import MatrixError, forbidden
from homeserver.http.bodies import json_body, opt_bool, opt_str, req_str
from homeserver.http.shell import json_response
from homeserver.net import client_ip
from homeserver.ratelimit import RateLimiter

NONCE_LIFETIME_MS = 60_000


def registration_mac(
    secret: str, nonce: str, username: str, password: str, admin: bool, user_type: str | None
) -> str:
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(nonce.encode())
    mac.update(b"\x00")
    mac.update(username.encode())
    mac.update(b"\x00")
    mac.update(password.encode())
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode())
    return mac.hexdigest()


class AdminRegisterApi:
    def __init__(self, accounts: AccountService, limiter: RateLimiter) -> None:
        self.accounts = accounts
        self.limiter = limiter
        self.secret = accounts.config.registration.shared_secret

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_synapse/admin/v1/register", self.get_nonce),
            web.post("/_synapse/admin/v1/register", self.post_register),
        ]

    def _require_enabled(self) -> str:
        if not self.secret:
            raise MatrixError(400, "M_UNKNOWN", "Shared secret registration is not enabled")
        return self.secret

    async def get_nonce(self, request: web.Request) -> web.Response:
        self._require_enabled()
        self.limiter.check("per_ip", client_ip(request))
        nonce = secrets.token_hex(32)
        await self.accounts.store.add_nonce(nonce, self.accounts.clock.now_ms())
        return json_response({"nonce": nonce})

    async def post_register(self, request: web.Request) -> web.Response:
        secret = self._require_enabled()
        self.limiter.check("per_ip", client_ip(request))
        body = await json_body(request)
        nonce = req_str(body, "nonce")
        username = req_str(body, "username")
        password = req_str(body, "password")
        admin = opt_bool(body, "admin", False)
        user_type = opt_str(body, "user_type")
        displayname = opt_str(body, "displayname")
        mac = req_str(body, "mac")
        not_before = self.accounts.clock.now_ms() - NONCE_LIFETIME_MS
        if not await self.accounts.store.take_nonce(nonce, not_before):
            raise MatrixError(400, "M_UNKNOWN", "Unrecognised or expired nonce")
        want = registration_mac(secret, nonce, username, password, admin, user_type)
        if not hmac.compare_digest(want.encode(), mac.lower().encode()):
            raise forbidden("HMAC incorrect")
        user_id = await self.accounts.check_available(username)
        await self.accounts.create_account(
            user_id, password, is_admin=admin, displayname=displayname
        )
        user = await self.accounts.store.get_user(user_id)
        assert user is not None
        session = await self.accounts.start_session(user, None, None, False)
        return json_response(session.to_json(self.accounts.server_name))
