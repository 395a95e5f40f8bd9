"""Admin views over ``users`` and ``devices``, and the table ``erased_users``.

Listing is paged by offset (Synapse's ``from``), filtered and ordered by a
fixed set of columns: ordering names come from a whitelist, never from the
request text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database
from homeserver.storage.like import like_pattern

ORDER_COLUMNS = {
    "name": "u.user_id",
    "is_guest": "u.is_guest",
    "admin": "u.is_admin",
    "deactivated": "u.deactivated",
    "displayname": "u.displayname",
    "avatar_url": "u.avatar_url",
    "creation_ts": "u.created_ts",
    "last_seen_ts": "last_seen",
    "user_type": "u.user_id",
    "shadow_banned": "u.user_id",
    "locked": "u.user_id",
}


@dataclass(frozen=True, slots=True)
class UserRow:
    user_id: str
    is_guest: bool
    is_admin: bool
    deactivated: bool
    displayname: str | None
    avatar_url: str | None
    created_ts: int
    last_seen_ts: int | None
    erased: bool


@dataclass(frozen=True, slots=True)
class UserQuery:
    offset: int = 0
    limit: int = 100
    name: str | None = None
    user_id: str | None = None
    guests: bool = True
    deactivated: bool = False
    admins: bool | None = None
    order_by: str = "name"
    backwards: bool = False


_COLUMNS = (
    "u.user_id, u.is_guest, u.is_admin, u.deactivated, u.displayname, u.avatar_url,"
    " u.created_ts, (SELECT MAX(d.last_seen_ts) FROM devices d WHERE d.user_nid = u.user_nid)"
    " AS last_seen, e.user_id"
)
_FROM = " FROM users u LEFT JOIN erased_users e ON e.user_id = u.user_id"


class UserAdminStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def list_users(self, q: UserQuery) -> tuple[list[UserRow], int]:
        """One page of users and the number matching the filters."""
        where: list[str] = []
        args: list[object] = []

        def arg(value: object) -> str:
            args.append(value)
            return f"${len(args)}"

        if q.name is not None:
            p = arg(like_pattern(q.name))
            where.append(
                f"(LOWER(u.user_id) LIKE {p} ESCAPE '\\'"
                f" OR LOWER(u.displayname) LIKE {p} ESCAPE '\\')"
            )
        elif q.user_id is not None:
            where.append(f"LOWER(u.user_id) LIKE {arg(like_pattern(q.user_id))} ESCAPE '\\'")
        if not q.guests:
            where.append("u.is_guest = 0")
        if not q.deactivated:
            where.append("u.deactivated = 0")
        if q.admins is not None:
            where.append(f"u.is_admin = {arg(int(q.admins))}")
        clause = (" WHERE " + " AND ".join(where)) if where else ""
        total = int(await self.db.fetchval("SELECT COUNT(*)" + _FROM + clause, *args))
        column = ORDER_COLUMNS.get(q.order_by, "u.user_id")
        direction = "DESC" if q.backwards else "ASC"
        nulls = "" if column in ("u.user_id",) else f"{column} IS NULL {direction}, "
        sql = (
            f"SELECT {_COLUMNS}{_FROM}{clause} ORDER BY {nulls}{column} {direction},"
            f" u.user_id {direction} LIMIT {arg(q.limit)} OFFSET {arg(q.offset)}"
        )
        rows = await self.db.fetchall(sql, *args)
        return [_row(r) for r in rows], total

    async def get_user(self, user_id: str) -> UserRow | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS}{_FROM} WHERE u.user_id = $1", user_id)
        return None if row is None else _row(row)

    async def device_sessions(
        self, user_id: str
    ) -> list[tuple[str, str | None, int | None, str | None]]:
        """(device_id, last_seen_ip, last_seen_ts, last_seen_user_agent) of every device
        of a user."""
        rows = await self.db.fetchall(
            "SELECT d.device_id, d.last_seen_ip, d.last_seen_ts, d.last_seen_user_agent"
            " FROM devices d JOIN users u ON u.user_nid = d.user_nid WHERE u.user_id = $1"
            " ORDER BY d.device_id",
            user_id,
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    async def mark_erased(self, user_id: str, now: int) -> None:
        await self.db.execute(
            "INSERT INTO erased_users (user_id, erased_ts) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO NOTHING",
            user_id,
            now,
        )

    async def reactivate(self, user_nid: int, user_id: str, password_hash: str) -> None:
        async with self.db.transaction() as txn:
            await txn.execute(
                "UPDATE users SET deactivated = 0, password_hash = $1 WHERE user_nid = $2",
                password_hash,
                user_nid,
            )
            await txn.execute("DELETE FROM erased_users WHERE user_id = $1", user_id)


def _row(r: Any) -> UserRow:
    return UserRow(
        user_id=r[0],
        is_guest=bool(r[1]),
        is_admin=bool(r[2]),
        deactivated=bool(r[3]),
        displayname=r[4],
        avatar_url=r[5],
        created_ts=int(r[6]),
        last_seen_ts=None if r[7] is None else int(r[7]),
        erased=r[8] is not None,
    )
