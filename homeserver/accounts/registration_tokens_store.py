"""Tables ``registration_tokens`` and ``registration_token_pending``.

A token's ``pending`` uses are the unexpired rows of the second table: a
registration that passed the token stage holds a use until it finishes or
its user-interactive auth session would have expired, so an abandoned
attempt never consumes a use for good.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Queries


@dataclass(frozen=True, slots=True)
class RegistrationToken:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "token": self.token,
            "uses_allowed": self.uses_allowed,
            "pending": self.pending,
            "completed": self.completed,
            "expiry_time": self.expiry_time,
        }

    def usable(self, now: int) -> bool:
        if self.expiry_time is not None and self.expiry_time <= now:
            return False
        return self.uses_allowed is None or self.pending + self.completed < self.uses_allowed


_SELECT = (
    "SELECT t.token, t.uses_allowed, t.completed, t.expiry_time,"
    " (SELECT COUNT(*) FROM registration_token_pending p"
    "  WHERE p.token = t.token AND p.created_ts >= $1)"
    " FROM registration_tokens t"
)


def _token(r: Any) -> RegistrationToken:
    return RegistrationToken(
        token=r[0],
        uses_allowed=None if r[1] is None else int(r[1]),
        pending=int(r[4]),
        completed=int(r[2]),
        expiry_time=None if r[3] is None else int(r[3]),
    )


class RegistrationTokenStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list(self, pending_since: int) -> list[RegistrationToken]:
        rows = await self.db.fetchall(_SELECT + " ORDER BY t.created_ts, t.token", pending_since)
        return [_token(r) for r in rows]

    async def get(
        self, token: str, pending_since: int, q: Queries | None = None
    ) -> RegistrationToken | None:
        row = await (q or self.db).fetchone(_SELECT + " WHERE t.token = $2", pending_since, token)
        return None if row is None else _token(row)

    async def any_exist(self) -> bool:
        return await self.db.fetchval("SELECT 1 FROM registration_tokens LIMIT 1") is not None

    async def create(
        self, token: str, uses_allowed: int | None, expiry_time: int | None, now: int
    ) -> bool:
        """Insert a new token; False when the token already exists."""
        row = await self.db.fetchone(
            "INSERT INTO registration_tokens (token, uses_allowed, expiry_time, created_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (token) DO NOTHING RETURNING token",
            token,
            uses_allowed,
            expiry_time,
            now,
        )
        return row is not None

    async def update(self, token: str, changes: dict[str, int | None]) -> bool:
        """Set ``uses_allowed`` and/or ``expiry_time``; False for an unknown token."""
        cols = [c for c in ("uses_allowed", "expiry_time") if c in changes]
        if not cols:
            return (
                await self.db.fetchval("SELECT 1 FROM registration_tokens WHERE token = $1", token)
                is not None
            )
        sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(cols))
        row = await self.db.fetchone(
            f"UPDATE registration_tokens SET {sets} WHERE token = $1 RETURNING token",
            token,
            *(changes[c] for c in cols),
        )
        return row is not None

    async def delete(self, token: str) -> bool:
        async with self.db.transaction() as txn:
            row = await txn.fetchone(
                "DELETE FROM registration_tokens WHERE token = $1 RETURNING token", token
            )
            await txn.execute("DELETE FROM registration_token_pending WHERE token = $1", token)
        return row is not None

    async def reserve(self, session_id: str, token: str, pending_since: int, now: int) -> bool:
        """Hold one use of ``token`` for ``session_id`` if the token is still usable."""
        async with self.db.transaction() as txn:
            held = await txn.fetchval(
                "SELECT token FROM registration_token_pending WHERE session_id = $1"
                " AND created_ts >= $2",
                session_id,
                pending_since,
            )
            if held == token:
                return True
            await txn.execute(
                "DELETE FROM registration_token_pending WHERE session_id = $1", session_id
            )
            found = await self.get(token, pending_since, txn)
            if found is None or not found.usable(now):
                return False
            await txn.execute(
                "INSERT INTO registration_token_pending (session_id, token, created_ts)"
                " VALUES ($1, $2, $3)",
                session_id,
                token,
                now,
            )
            return True

    async def complete(self, session_id: str) -> None:
        """The session registered: its held use becomes a completed one."""
        async with self.db.transaction() as txn:
            token = await txn.fetchval(
                "DELETE FROM registration_token_pending WHERE session_id = $1 RETURNING token",
                session_id,
            )
            if token is not None:
                await txn.execute(
                    "UPDATE registration_tokens SET completed = completed + 1 WHERE token = $1",
                    token,
                )

    async def forget_expired(self, before: int) -> None:
        await self.db.execute(
            "DELETE FROM registration_token_pending WHERE created_ts < $1", before
        )
