"""Tables ``users``, ``devices``, ``access_tokens``, ``refresh_tokens``.

One store for both engines. Every statement names its columns; callers get
small frozen records rather than raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Queries


@dataclass(frozen=True, slots=True)
class UserRecord:
    user_nid: int
    user_id: str
    password_hash: str | None
    is_admin: bool
    is_guest: bool
    deactivated: bool
    displayname: str | None
    avatar_url: str | None


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None
    last_seen_user_agent: str | None = None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    user_nid: int
    user_id: str
    device_id: str
    expires_ts: int | None
    is_guest: bool
    is_admin: bool
    deactivated: bool


class UserExists(Exception):
    """The user id is taken."""


_USER_COLUMNS = (
    "user_nid, user_id, password_hash, is_admin, is_guest, deactivated, displayname, avatar_url"
)


def _user(row: Any) -> UserRecord | None:
    if row is None:
        return None
    return UserRecord(
        user_nid=row[0],
        user_id=row[1],
        password_hash=row[2],
        is_admin=bool(row[3]),
        is_guest=bool(row[4]),
        deactivated=bool(row[5]),
        displayname=row[6],
        avatar_url=row[7],
    )


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ----------------------------------------------------------------- users

    async def create_user(
        self,
        user_id: str,
        password_hash: str | None,
        *,
        is_admin: bool,
        is_guest: bool,
        displayname: str | None,
        now: int,
    ) -> int:
        async with self.db.transaction() as txn:
            taken = await txn.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id)
            if taken is not None:
                raise UserExists(user_id)
            nid: int = await txn.fetchval(
                "INSERT INTO users (user_id, password_hash, is_admin, is_guest, displayname,"
                " created_ts) VALUES ($1, $2, $3, $4, $5, $6) RETURNING user_nid",
                user_id,
                password_hash,
                int(is_admin),
                int(is_guest),
                displayname,
                now,
            )
            return nid

    async def get_user(self, user_id: str) -> UserRecord | None:
        return _user(
            await self.db.fetchone(f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = $1", user_id)
        )

    async def get_user_by_nid(self, user_nid: int) -> UserRecord | None:
        return _user(
            await self.db.fetchone(
                f"SELECT {_USER_COLUMNS} FROM users WHERE user_nid = $1", user_nid
            )
        )

    async def user_exists(self, user_id: str) -> bool:
        return await self.db.fetchval("SELECT 1 FROM users WHERE user_id = $1", user_id) is not None

    async def set_password_hash(self, user_nid: int, password_hash: str | None) -> None:
        await self.db.execute(
            "UPDATE users SET password_hash = $1 WHERE user_nid = $2", password_hash, user_nid
        )

    async def upgrade_guest(self, user_nid: int, password_hash: str | None) -> None:
        """A guest account becomes a full account (registration with guest_access_token)."""
        await self.db.execute(
            "UPDATE users SET is_guest = 0, password_hash = $1 WHERE user_nid = $2",
            password_hash,
            user_nid,
        )

    async def set_admin(self, user_nid: int, is_admin: bool) -> None:
        await self.db.execute(
            "UPDATE users SET is_admin = $1 WHERE user_nid = $2", int(is_admin), user_nid
        )

    async def set_displayname(self, user_nid: int, displayname: str | None) -> None:
        await self.db.execute(
            "UPDATE users SET displayname = $1 WHERE user_nid = $2", displayname, user_nid
        )

    async def set_avatar_url(self, user_nid: int, avatar_url: str | None) -> None:
        await self.db.execute(
            "UPDATE users SET avatar_url = $1 WHERE user_nid = $2", avatar_url, user_nid
        )

    async def deactivate(self, user_nid: int) -> None:
        """Mark deactivated, drop the password, every device and every token, in one go."""
        async with self.db.transaction() as txn:
            await txn.execute(
                "UPDATE users SET deactivated = 1, password_hash = NULL,"
                " displayname = NULL, avatar_url = NULL WHERE user_nid = $1",
                user_nid,
            )
            await txn.execute("DELETE FROM access_tokens WHERE user_nid = $1", user_nid)
            await txn.execute("DELETE FROM refresh_tokens WHERE user_nid = $1", user_nid)
            await txn.execute("DELETE FROM devices WHERE user_nid = $1", user_nid)

    # --------------------------------------------------------------- devices

    async def ensure_device(
        self, txn: Queries, user_nid: int, device_id: str, display_name: str | None, now: int
    ) -> bool:
        """Create the device if it does not exist; True when it was created."""
        row = await txn.fetchone(
            "INSERT INTO devices (user_nid, device_id, display_name, created_ts, last_seen_ts)"
            " VALUES ($1, $2, $3, $4, $4) ON CONFLICT (user_nid, device_id) DO NOTHING"
            " RETURNING device_id",
            user_nid,
            device_id,
            display_name,
            now,
        )
        return row is not None

    async def list_devices(self, user_nid: int) -> list[DeviceRecord]:
        rows = await self.db.fetchall(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip, last_seen_user_agent"
            " FROM devices WHERE user_nid = $1 ORDER BY device_id",
            user_nid,
        )
        return [DeviceRecord(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def get_device(self, user_nid: int, device_id: str) -> DeviceRecord | None:
        r = await self.db.fetchone(
            "SELECT device_id, display_name, last_seen_ts, last_seen_ip FROM devices"
            " WHERE user_nid = $1 AND device_id = $2",
            user_nid,
            device_id,
        )
        return None if r is None else DeviceRecord(r[0], r[1], r[2], r[3])

    async def set_device_display_name(
        self, user_nid: int, device_id: str, display_name: str | None
    ) -> bool:
        row = await self.db.fetchone(
            "UPDATE devices SET display_name = $1 WHERE user_nid = $2 AND device_id = $3"
            " RETURNING device_id",
            display_name,
            user_nid,
            device_id,
        )
        return row is not None

    async def touch_device(
        self,
        user_nid: int,
        device_id: str,
        ip: str | None,
        now: int,
        user_agent: str | None = None,
    ) -> None:
        await self.db.execute(
            "UPDATE devices SET last_seen_ts = $1, last_seen_ip = $2, last_seen_user_agent = $3"
            " WHERE user_nid = $4 AND device_id = $5",
            now,
            ip,
            user_agent,
            user_nid,
            device_id,
        )

    async def forget_client_ips(self, seen_before_ts: int) -> int:
        """Clear the IP and User-Agent of devices last seen before ``seen_before_ts``
        (privacy retention; a device with no last_seen_ts counts as old). Returns
        how many devices were cleared."""
        rows = await self.db.fetchall(
            "UPDATE devices SET last_seen_ip = NULL, last_seen_user_agent = NULL"
            " WHERE last_seen_ip IS NOT NULL"
            " AND (last_seen_ts IS NULL OR last_seen_ts < $1) RETURNING device_id",
            seen_before_ts,
        )
        return len(rows)

    async def delete_devices(self, user_nid: int, device_ids: list[str]) -> list[str]:
        """Delete devices and their tokens; return the token hashes that were revoked."""
        revoked: list[str] = []
        async with self.db.transaction() as txn:
            for device_id in device_ids:
                rows = await txn.fetchall(
                    "DELETE FROM access_tokens WHERE user_nid = $1 AND device_id = $2"
                    " RETURNING token_hash",
                    user_nid,
                    device_id,
                )
                revoked.extend(r[0] for r in rows)
                await txn.execute(
                    "DELETE FROM refresh_tokens WHERE user_nid = $1 AND device_id = $2",
                    user_nid,
                    device_id,
                )
                await txn.execute(
                    "DELETE FROM devices WHERE user_nid = $1 AND device_id = $2",
                    user_nid,
                    device_id,
                )
        return revoked

    # ---------------------------------------------------------------- tokens

    async def add_access_token(
        self,
        txn: Queries,
        token_hash: str,
        user_nid: int,
        device_id: str,
        now: int,
        expires_ts: int | None,
    ) -> None:
        await txn.execute(
            "INSERT INTO access_tokens (token_hash, user_nid, device_id, created_ts, expires_ts)"
            " VALUES ($1, $2, $3, $4, $5)",
            token_hash,
            user_nid,
            device_id,
            now,
            expires_ts,
        )

    async def add_refresh_token(
        self, txn: Queries, token_hash: str, user_nid: int, device_id: str, now: int
    ) -> None:
        await txn.execute(
            "INSERT INTO refresh_tokens (token_hash, user_nid, device_id, created_ts)"
            " VALUES ($1, $2, $3, $4)",
            token_hash,
            user_nid,
            device_id,
            now,
        )

    async def get_access_token(self, token_hash: str) -> TokenRecord | None:
        r = await self.db.fetchone(
            "SELECT t.user_nid, u.user_id, t.device_id, t.expires_ts, u.is_guest, u.is_admin,"
            " u.deactivated FROM access_tokens t JOIN users u ON u.user_nid = t.user_nid"
            " WHERE t.token_hash = $1",
            token_hash,
        )
        if r is None:
            return None
        return TokenRecord(r[0], r[1], r[2], r[3], bool(r[4]), bool(r[5]), bool(r[6]))

    async def take_refresh_token(self, txn: Queries, token_hash: str) -> tuple[int, str] | None:
        """Consume a refresh token (single use): (user_nid, device_id) or None."""
        r = await txn.fetchone(
            "DELETE FROM refresh_tokens WHERE token_hash = $1 RETURNING user_nid, device_id",
            token_hash,
        )
        return None if r is None else (r[0], r[1])

    async def delete_access_tokens_for_device(
        self, txn: Queries, user_nid: int, device_id: str
    ) -> list[str]:
        rows = await txn.fetchall(
            "DELETE FROM access_tokens WHERE user_nid = $1 AND device_id = $2 RETURNING token_hash",
            user_nid,
            device_id,
        )
        return [r[0] for r in rows]

    async def delete_refresh_tokens_for_device(
        self, txn: Queries, user_nid: int, device_id: str
    ) -> None:
        await txn.execute(
            "DELETE FROM refresh_tokens WHERE user_nid = $1 AND device_id = $2",
            user_nid,
            device_id,
        )

    async def device_ids(self, user_nid: int) -> list[str]:
        rows = await self.db.fetchall("SELECT device_id FROM devices WHERE user_nid = $1", user_nid)
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ nonces

    async def add_nonce(self, nonce: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO registration_nonces (nonce, created_ts) VALUES ($1, $2)", nonce, now
        )

    async def take_nonce(self, nonce: str, not_before: int) -> bool:
        row = await self.db.fetchone(
            "DELETE FROM registration_nonces WHERE nonce = $1 RETURNING created_ts", nonce
        )
        return row is not None and row[0] >= not_before
