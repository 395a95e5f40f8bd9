"""Registration tokens (spec "Token-authenticated registration"; Synapse's admin API shapes).

Two sources: the unlimited tokens of the config (``registration.tokens``)
and the tokens admins create through the admin API, which may carry a use
limit and an expiry time. A registration that passes the token stage holds
one use of a database token (``pending``) until it finishes (``completed``).
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from homeserver.accounts.registration_tokens_store import RegistrationToken, RegistrationTokenStore
from homeserver.accounts.secrets import constant_time_equals
from homeserver.accounts.uia import SESSION_LIFETIME_MS
from homeserver.clock import Clock
from homeserver.errors import MatrixError, invalid_param, not_found

TOKEN_CHARS = string.ascii_letters + string.digits + "._~-"
MAX_TOKEN_LENGTH = 64
DEFAULT_GENERATED_LENGTH = 16


def check_token_text(token: str) -> None:
    """Spec: 1 to 64 characters from [A-Za-z0-9._~-]."""
    if not 0 < len(token) <= MAX_TOKEN_LENGTH or any(c not in TOKEN_CHARS for c in token):
        raise invalid_param(
            f"token must be 1 to {MAX_TOKEN_LENGTH} characters"
            " from A-Z, a-z, 0-9, '.', '_', '~', '-'"
        )


def _opt_count(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_param(f"{key} must be a non-negative integer or null")
    return value


class RegistrationTokens:
    def __init__(
        self, store: RegistrationTokenStore, config_tokens: list[str], clock: Clock
    ) -> None:
        self.store = store
        self.config_tokens = config_tokens
        self.clock = clock

    def _pending_since(self) -> int:
        return self.clock.now_ms() - SESSION_LIFETIME_MS

    # ------------------------------------------------------------ registration

    async def offered(self) -> bool:
        """Whether /register offers the m.login.registration_token stage."""
        return bool(self.config_tokens) or await self.store.any_exist()

    def _in_config(self, token: str) -> bool:
        return any(constant_time_equals(token, t) for t in self.config_tokens)

    async def is_valid(self, token: str) -> bool:
        """For the validity endpoint: would a registration with this token be accepted now?"""
        if "\x00" in token:
            return False
        if self._in_config(token):
            return True
        found = await self.store.get(token, self._pending_since())
        return found is not None and found.usable(self.clock.now_ms())

    async def check_stage(self, auth: dict[str, Any]) -> bool:
        """The m.login.registration_token stage; a database token needs the session id
        (which every client sends) so its use can be held until registration completes."""
        token = auth.get("token")
        if not isinstance(token, str) or "\x00" in token:
            return False
        if self._in_config(token):
            return True
        session = auth.get("session")
        if not isinstance(session, str) or "\x00" in session:
            return False
        now = self.clock.now_ms()
        return await self.store.reserve(session, token, now - SESSION_LIFETIME_MS, now)

    async def registered(self, auth: Any) -> None:
        """Registration finished: the session's held use (if any) is completed."""
        if isinstance(auth, dict):
            session = auth.get("session")
            if isinstance(session, str) and "\x00" not in session:
                await self.store.complete(session)

    # --------------------------------------------------------------- admin API

    async def list(self, valid: bool | None) -> list[RegistrationToken]:
        now = self.clock.now_ms()
        await self.store.forget_expired(now - SESSION_LIFETIME_MS)
        tokens = await self.store.list(self._pending_since())
        if valid is None:
            return tokens
        return [t for t in tokens if t.usable(now) == valid]

    async def get(self, token: str) -> RegistrationToken:
        found = None if "\x00" in token else await self.store.get(token, self._pending_since())
        if found is None:
            raise not_found("No such registration token")
        return found

    async def create(self, body: dict[str, Any]) -> RegistrationToken:
        uses_allowed = _opt_count(body, "uses_allowed")
        expiry_time = _opt_count(body, "expiry_time")
        if expiry_time is not None and expiry_time < self.clock.now_ms():
            raise invalid_param("expiry_time must not be in the past")
        token = body.get("token")
        if token is not None:
            if not isinstance(token, str):
                raise invalid_param("token must be a string")
            check_token_text(token)
            if not await self.store.create(token, uses_allowed, expiry_time, self.clock.now_ms()):
                raise invalid_param("This token already exists")
            return await self.get(token)
        length = body.get("length", DEFAULT_GENERATED_LENGTH)
        if isinstance(length, bool) or not isinstance(length, int):
            raise invalid_param("length must be an integer")
        if not 0 < length <= MAX_TOKEN_LENGTH:
            raise invalid_param(f"length must be between 1 and {MAX_TOKEN_LENGTH}")
        for _ in range(10):
            token = "".join(secrets.choice(TOKEN_CHARS) for _ in range(length))
            if await self.store.create(token, uses_allowed, expiry_time, self.clock.now_ms()):
                return await self.get(token)
        raise MatrixError(500, "M_UNKNOWN", "Could not generate an unused token; use a longer one")

    async def update(self, token: str, body: dict[str, Any]) -> RegistrationToken:
        changes: dict[str, int | None] = {}
        for key in ("uses_allowed", "expiry_time"):
            if key in body:
                changes[key] = _opt_count(body, key)
        if "\x00" in token or not await self.store.update(token, changes):
            raise not_found("No such registration token")
        return await self.get(token)

    async def delete(self, token: str) -> None:
        if "\x00" in token or not await self.store.delete(token):
            raise not_found("No such registration token")
