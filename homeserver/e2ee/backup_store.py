"""Tables ``e2e_backup_versions`` and ``e2e_backup_keys``
(DDL and reasons: migrations/0030_e2ee.sql). session_data is opaque JSON text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders


@dataclass(frozen=True, slots=True)
class BackupVersion:
    version: int
    algorithm: str
    auth_data: Any
    etag: int
    deleted: bool


@dataclass(frozen=True, slots=True)
class BackupKey:
    room_id: str
    session_id: str
    first_message_index: int
    forwarded_count: int
    is_verified: bool
    session_data: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        }


def _version(row: Any) -> BackupVersion | None:
    if row is None:
        return None
    return BackupVersion(int(row[0]), row[1], json.loads(row[2]), int(row[3]), bool(row[4]))


_VERSION_COLUMNS = "version, algorithm, auth_data, etag, deleted"


class BackupStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, user_id: str, algorithm: str, auth_data: Any) -> int:
        async with self.db.transaction() as txn:
            version: int = await txn.fetchval(
                "INSERT INTO e2e_backup_versions (user_id, algorithm, auth_data)"
                " VALUES ($1, $2, $3) RETURNING version",
                user_id,
                algorithm,
                json.dumps(auth_data),
            )
            return version

    async def latest(self, db: Database | Queries, user_id: str) -> BackupVersion | None:
        return _version(
            await db.fetchone(
                f"SELECT {_VERSION_COLUMNS} FROM e2e_backup_versions"
                " WHERE user_id = $1 AND deleted = 0 ORDER BY version DESC LIMIT 1",
                user_id,
            )
        )

    async def get(self, db: Database | Queries, user_id: str, version: int) -> BackupVersion | None:
        return _version(
            await db.fetchone(
                f"SELECT {_VERSION_COLUMNS} FROM e2e_backup_versions"
                " WHERE user_id = $1 AND version = $2",
                user_id,
                version,
            )
        )

    async def update_auth_data(self, version: int, auth_data: Any) -> None:
        await self.db.execute(
            "UPDATE e2e_backup_versions SET auth_data = $1 WHERE version = $2",
            json.dumps(auth_data),
            version,
        )

    async def mark_deleted(self, version: int) -> None:
        async with self.db.transaction() as txn:
            await txn.execute(
                "UPDATE e2e_backup_versions SET deleted = 1 WHERE version = $1", version
            )
            await txn.execute("DELETE FROM e2e_backup_keys WHERE version = $1", version)

    async def delete_user(self, user_id: str) -> None:
        async with self.db.transaction() as txn:
            await txn.execute(
                "DELETE FROM e2e_backup_keys WHERE version IN"
                " (SELECT version FROM e2e_backup_versions WHERE user_id = $1)",
                user_id,
            )
            await txn.execute(
                "UPDATE e2e_backup_versions SET deleted = 1 WHERE user_id = $1", user_id
            )

    async def count(self, db: Database | Queries, version: int) -> int:
        n = await db.fetchval("SELECT COUNT(*) FROM e2e_backup_keys WHERE version = $1", version)
        return int(n)

    async def keys(
        self,
        db: Database | Queries,
        version: int,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> list[BackupKey]:
        where, args = _key_filter(version, room_id, session_id)
        rows = await db.fetchall(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,"
            " session_data FROM e2e_backup_keys" + where,
            *args,
        )
        return [
            BackupKey(r[0], r[1], int(r[2]), int(r[3]), bool(r[4]), json.loads(r[5])) for r in rows
        ]

    async def keys_in_rooms(
        self, txn: Queries, version: int, room_ids: list[str]
    ) -> dict[tuple[str, str], BackupKey]:
        """Stored keys of several rooms, by (room_id, session_id), in one query."""
        if not room_ids:
            return {}
        marks = placeholders(len(room_ids), 2)
        rows = await txn.fetchall(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,"
            f" session_data FROM e2e_backup_keys WHERE version = $1 AND room_id IN ({marks})",
            version,
            *room_ids,
        )
        return {
            (r[0], r[1]): BackupKey(r[0], r[1], int(r[2]), int(r[3]), bool(r[4]), json.loads(r[5]))
            for r in rows
        }

    async def lock_version(self, txn: Queries, version: int) -> None:
        """Take the version row's lock so concurrent uploads apply one after the other."""
        await txn.execute("UPDATE e2e_backup_versions SET etag = etag WHERE version = $1", version)

    async def put_keys(self, txn: Queries, version: int, keys: list[BackupKey]) -> None:
        await txn.executemany(
            "INSERT INTO e2e_backup_keys (version, room_id, session_id, first_message_index,"
            " forwarded_count, is_verified, session_data) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (version, room_id, session_id) DO UPDATE SET"
            " first_message_index = excluded.first_message_index,"
            " forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified,"
            " session_data = excluded.session_data",
            [
                (
                    version,
                    k.room_id,
                    k.session_id,
                    k.first_message_index,
                    k.forwarded_count,
                    int(k.is_verified),
                    json.dumps(k.session_data),
                )
                for k in keys
            ],
        )

    async def delete_keys(
        self, txn: Queries, version: int, room_id: str | None, session_id: str | None
    ) -> int:
        where, args = _key_filter(version, room_id, session_id)
        rows = await txn.fetchall(
            "DELETE FROM e2e_backup_keys" + where + " RETURNING session_id", *args
        )
        return len(rows)

    async def etag(self, db: Database | Queries, version: int) -> int:
        value = await db.fetchval(
            "SELECT etag FROM e2e_backup_versions WHERE version = $1", version
        )
        return int(value)

    async def bump_etag(self, txn: Queries, version: int) -> None:
        await txn.execute(
            "UPDATE e2e_backup_versions SET etag = etag + 1 WHERE version = $1", version
        )


def _key_filter(version: int, room_id: str | None, session_id: str | None) -> tuple[str, list[Any]]:
    """WHERE clause and arguments for all keys of a version, one room, or one session."""
    where = " WHERE version = $1"
    args: list[Any] = [version]
    if room_id is not None:
        where += " AND room_id = $2"
        args.append(room_id)
        if session_id is not None:
            where += " AND session_id = $3"
            args.append(session_id)
    return where, args
