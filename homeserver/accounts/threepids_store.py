"""Tables ``user_threepids``, ``threepid_validation_sessions`` and ``login_tokens``.

Why they are shaped so is in migration 0240. One store for both engines; the
single-use rules (a login token, an address belonging to one account) are held
by the database itself (``DELETE ... RETURNING``, the primary key), so two
concurrent requests cannot both win.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class ThreepidRecord:
    medium: str
    address: str
    user_nid: int
    validated_at: int
    added_at: int


@dataclass(frozen=True, slots=True)
class ValidationSession:
    session_id: str
    client_secret: str
    medium: str
    address: str
    last_send_attempt: int
    token_hash: str
    token_expires_ts: int
    created_ts: int
    validated_ts: int | None


class ThreepidInUse(Exception):
    """The address already belongs to an account."""


_SESSION_COLUMNS = (
    "session_id, client_secret, medium, address, last_send_attempt, token_hash,"
    " token_expires_ts, created_ts, validated_ts"
)


class ThreepidStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------ addresses

    async def threepids_of(self, user_nid: int) -> list[ThreepidRecord]:
        rows = await self.db.fetchall(
            "SELECT medium, address, user_nid, validated_at, added_at FROM user_threepids"
            " WHERE user_nid = $1 ORDER BY added_at, address",
            user_nid,
        )
        return [ThreepidRecord(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def owner(self, medium: str, address: str) -> int | None:
        """The user_nid the address belongs to, if any."""
        nid = await self.db.fetchval(
            "SELECT user_nid FROM user_threepids WHERE medium = $1 AND address = $2",
            medium,
            address,
        )
        return None if nid is None else int(nid)

    async def add(
        self, user_nid: int, medium: str, address: str, validated_at: int, now: int
    ) -> None:
        """Attach the address to the user (again: nothing changes); ``ThreepidInUse``
        when another account has it."""
        async with self.db.transaction() as txn:
            row = await txn.fetchone(
                "INSERT INTO user_threepids (medium, address, user_nid, validated_at, added_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (medium, address) DO NOTHING"
                " RETURNING user_nid",
                medium,
                address,
                user_nid,
                validated_at,
                now,
            )
            if row is not None:
                return
            holder = await txn.fetchval(
                "SELECT user_nid FROM user_threepids WHERE medium = $1 AND address = $2",
                medium,
                address,
            )
            if holder != user_nid:
                raise ThreepidInUse(address)

    async def remove(self, user_nid: int, medium: str, address: str) -> bool:
        row = await self.db.fetchone(
            "DELETE FROM user_threepids WHERE user_nid = $1 AND medium = $2 AND address = $3"
            " RETURNING address",
            user_nid,
            medium,
            address,
        )
        return row is not None

    async def remove_all(self, user_nid: int) -> None:
        await self.db.execute("DELETE FROM user_threepids WHERE user_nid = $1", user_nid)

    # -------------------------------------------------- validation sessions

    async def session_for(
        self, client_secret: str, medium: str, address: str
    ) -> ValidationSession | None:
        row = await self.db.fetchone(
            f"SELECT {_SESSION_COLUMNS} FROM threepid_validation_sessions"
            " WHERE client_secret = $1 AND medium = $2 AND address = $3",
            client_secret,
            medium,
            address,
        )
        return None if row is None else ValidationSession(*row)

    async def session(self, session_id: str) -> ValidationSession | None:
        row = await self.db.fetchone(
            f"SELECT {_SESSION_COLUMNS} FROM threepid_validation_sessions WHERE session_id = $1",
            session_id,
        )
        return None if row is None else ValidationSession(*row)

    async def create_session(self, s: ValidationSession) -> bool:
        """Insert a new session; False if one for the same secret and address appeared
        meanwhile (a concurrent retry)."""
        row = await self.db.fetchone(
            "INSERT INTO threepid_validation_sessions"
            f" ({_SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (client_secret, medium, address) DO NOTHING RETURNING session_id",
            s.session_id,
            s.client_secret,
            s.medium,
            s.address,
            s.last_send_attempt,
            s.token_hash,
            s.token_expires_ts,
            s.created_ts,
            s.validated_ts,
        )
        return row is not None

    async def new_token(
        self, session_id: str, send_attempt: int, token_hash: str, expires_ts: int
    ) -> bool:
        """Replace the session's token for a higher ``send_attempt``; False when another
        request already took this (or a higher) attempt."""
        row = await self.db.fetchone(
            "UPDATE threepid_validation_sessions SET last_send_attempt = $1, token_hash = $2,"
            " token_expires_ts = $3 WHERE session_id = $4 AND last_send_attempt < $1"
            " RETURNING session_id",
            send_attempt,
            token_hash,
            expires_ts,
            session_id,
        )
        return row is not None

    async def undo_attempt(self, session_id: str, failed: int, previous: int) -> None:
        """Forget a send attempt whose mail could not be sent (unless a later one came)."""
        await self.db.execute(
            "UPDATE threepid_validation_sessions SET last_send_attempt = $1"
            " WHERE session_id = $2 AND last_send_attempt = $3",
            previous,
            session_id,
            failed,
        )

    async def mark_validated(self, session_id: str, now: int) -> None:
        await self.db.execute(
            "UPDATE threepid_validation_sessions SET validated_ts = $1"
            " WHERE session_id = $2 AND validated_ts IS NULL",
            now,
            session_id,
        )

    async def delete_session(self, session_id: str) -> None:
        await self.db.execute(
            "DELETE FROM threepid_validation_sessions WHERE session_id = $1", session_id
        )

    async def delete_sessions_before(self, created_before: int) -> None:
        await self.db.execute(
            "DELETE FROM threepid_validation_sessions WHERE created_ts < $1", created_before
        )

    # ---------------------------------------------------------- login tokens

    async def add_login_token(
        self, token_hash: str, user_nid: int, now: int, expires_ts: int
    ) -> None:
        await self.db.execute("DELETE FROM login_tokens WHERE expires_ts <= $1", now)
        await self.db.execute(
            "INSERT INTO login_tokens (token_hash, user_nid, created_ts, expires_ts)"
            " VALUES ($1, $2, $3, $4)",
            token_hash,
            user_nid,
            now,
            expires_ts,
        )

    async def take_login_token(self, token_hash: str, now: int) -> int | None:
        """Consume a login token (single use): its user_nid if it was still valid."""
        row = await self.db.fetchone(
            "DELETE FROM login_tokens WHERE token_hash = $1 RETURNING user_nid, expires_ts",
            token_hash,
        )
        if row is None or row[1] <= now:
            return None
        return int(row[0])
