"""Login tokens (spec v1.7 ``POST /login/get_token`` and the ``m.login.token`` login type).

A signed-in device mints a token; another device logs in with it once. The
token is 256 random bits, stored only as its SHA-256, looked up by that hash and
deleted by the login that uses it (``DELETE ... RETURNING``), so two logins
racing with one token cannot both succeed. It lives
``login_via_existing_session.token_timeout_ms``.
"""

from __future__ import annotations

from homeserver.accounts.requester import Requester
from homeserver.accounts.secrets import hash_token, new_token
from homeserver.accounts.threepids_store import ThreepidStore
from homeserver.clock import Clock
from homeserver.config import LoginViaExistingSessionConfig
from homeserver.errors import forbidden


class LoginTokens:
    def __init__(
        self, config: LoginViaExistingSessionConfig, store: ThreepidStore, clock: Clock
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock

    async def mint(self, requester: Requester) -> tuple[str, int]:
        """A fresh token for the requester's account and its lifetime in milliseconds."""
        token = new_token("mylt")
        now = self.clock.now_ms()
        lifetime = self.config.token_timeout_ms
        await self.store.add_login_token(hash_token(token), requester.user_nid, now, now + lifetime)
        return token, lifetime

    async def redeem(self, token: str) -> int:
        """The user_nid the token logs in; 403 M_FORBIDDEN for an unknown, used or
        expired token (spec: "the token is not valid")."""
        user_nid = await self.store.take_login_token(hash_token(token), self.clock.now_ms())
        if user_nid is None:
            raise forbidden("Invalid login token")
        return user_nid
