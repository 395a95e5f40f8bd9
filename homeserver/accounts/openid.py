"""OpenID tokens: a user proves who they are to a third party (spec: client-server
"OpenID", server-server "OpenID"). Tokens are random, kept only as hashes, and
valid for an hour."""

from __future__ import annotations

import secrets
from typing import Any

from homeserver.accounts.secrets import hash_token
from homeserver.clock import Clock
from homeserver.storage.database import Database

TOKEN_LIFETIME_MS = 3600 * 1000


class OpenIdTokens:
    def __init__(self, db: Database, clock: Clock, server_name: str) -> None:
        self.db = db
        self.clock = clock
        self.server_name = server_name

    async def issue(self, user_id: str) -> dict[str, Any]:
        """A new token for ``user_id``: the spec's ``OpenIdCredentials``."""
        now = self.clock.now_ms()
        token = secrets.token_urlsafe(32)
        async with self.db.transaction() as txn:
            await txn.execute("DELETE FROM openid_tokens WHERE expires_ts <= $1", now)
            await txn.execute(
                "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
                hash_token(token),
                user_id,
                now + TOKEN_LIFETIME_MS,
            )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "matrix_server_name": self.server_name,
            "expires_in": TOKEN_LIFETIME_MS // 1000,
        }

    async def user_for(self, token: str) -> str | None:
        """Who holds ``token``, if it is one of ours and not expired."""
        row = await self.db.fetchone(
            "SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2",
            hash_token(token),
            self.clock.now_ms(),
        )
        return None if row is None else str(row["user_id"])
