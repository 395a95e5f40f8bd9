"""Tables ``media`` and ``media_thumbnails``: metadata of local and remote media.

The bytes live in the content store under ``content_hash``; these rows say
who uploaded what, under which type and name, when it was stored and last
read, and whether it is quarantined. See migration 0100 for the reasons of
the columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Queries

_COLUMNS = (
    "server_name, media_id, user_id, content_hash, size, content_type, upload_name,"
    " created_ts, stored_ts, last_access_ts, quarantined"
)


@dataclass(frozen=True, slots=True)
class MediaRow:
    server_name: str
    media_id: str
    user_id: str | None
    content_hash: str | None
    size: int
    content_type: str | None
    upload_name: str | None
    created_ts: int
    stored_ts: int | None
    last_access_ts: int
    quarantined: bool


@dataclass(frozen=True, slots=True)
class ThumbnailRow:
    width: int
    height: int
    method: str
    animated: bool
    content_type: str
    content_hash: str
    size: int


def _media(row: Any) -> MediaRow:
    return MediaRow(
        row[0],
        row[1],
        row[2],
        row[3],
        int(row[4]),
        row[5],
        row[6],
        int(row[7]),
        None if row[8] is None else int(row[8]),
        int(row[9]),
        bool(row[10]),
    )


class MediaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, server_name: str, media_id: str) -> MediaRow | None:
        row = await self.db.fetchone(
            f"SELECT {_COLUMNS} FROM media WHERE server_name = $1 AND media_id = $2",
            server_name,
            media_id,
        )
        return None if row is None else _media(row)

    async def insert(self, row: MediaRow) -> None:
        await self.db.execute(
            f"INSERT INTO media ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            row.server_name,
            row.media_id,
            row.user_id,
            row.content_hash,
            row.size,
            row.content_type,
            row.upload_name,
            row.created_ts,
            row.stored_ts,
            row.last_access_ts,
            int(row.quarantined),
        )

    async def upsert_remote(self, row: MediaRow) -> None:
        """A remote media fetched again (after eviction) replaces its old row."""
        async with self.db.transaction() as txn:
            await txn.execute(
                "DELETE FROM media WHERE server_name = $1 AND media_id = $2",
                row.server_name,
                row.media_id,
            )
            await txn.execute(
                f"INSERT INTO media ({_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                row.server_name,
                row.media_id,
                row.user_id,
                row.content_hash,
                row.size,
                row.content_type,
                row.upload_name,
                row.created_ts,
                row.stored_ts,
                row.last_access_ts,
                int(row.quarantined),
            )

    async def fill_pending(
        self,
        server_name: str,
        media_id: str,
        content_hash: str,
        size: int,
        content_type: str,
        upload_name: str | None,
        now: int,
    ) -> bool:
        """Attach content to a row made by /create; False if it already had content."""
        async with self.db.transaction() as txn:
            current = await txn.fetchval(
                "SELECT content_hash FROM media WHERE server_name = $1 AND media_id = $2",
                server_name,
                media_id,
            )
            if current is not None:
                return False
            await txn.execute(
                "UPDATE media SET content_hash = $3, size = $4, content_type = $5,"
                " upload_name = $6, stored_ts = $7, last_access_ts = $7"
                " WHERE server_name = $1 AND media_id = $2",
                server_name,
                media_id,
                content_hash,
                size,
                content_type,
                upload_name,
                now,
            )
            return True

    async def touch(self, server_name: str, media_id: str, now: int) -> None:
        await self.db.execute(
            "UPDATE media SET last_access_ts = $3 WHERE server_name = $1 AND media_id = $2",
            server_name,
            media_id,
            now,
        )

    async def user_usage(self, user_id: str) -> int:
        total = await self.db.fetchval(
            "SELECT COALESCE(SUM(size), 0) FROM media WHERE user_id = $1", user_id
        )
        return int(total)

    async def pending_count(self, user_id: str, since_ts: int) -> int:
        """Ids made by /create, not yet uploaded and not yet expired."""
        n = await self.db.fetchval(
            "SELECT COUNT(*) FROM media WHERE user_id = $1 AND content_hash IS NULL"
            " AND created_ts > $2",
            user_id,
            since_ts,
        )
        return int(n)

    async def set_quarantined(self, server_name: str, media_id: str) -> str | None:
        """Quarantine a media id; its content hash (None if unknown or empty)."""
        async with self.db.transaction() as txn:
            digest = await txn.fetchval(
                "SELECT content_hash FROM media WHERE server_name = $1 AND media_id = $2",
                server_name,
                media_id,
            )
            await txn.execute(
                "UPDATE media SET quarantined = 1 WHERE server_name = $1 AND media_id = $2",
                server_name,
                media_id,
            )
            await txn.execute(
                "DELETE FROM media_thumbnails WHERE server_name = $1 AND media_id = $2",
                server_name,
                media_id,
            )
        return None if digest is None else str(digest)

    async def delete(self, q: Database | Queries, server_name: str, media_id: str) -> None:
        await q.execute(
            "DELETE FROM media_thumbnails WHERE server_name = $1 AND media_id = $2",
            server_name,
            media_id,
        )
        await q.execute(
            "DELETE FROM media WHERE server_name = $1 AND media_id = $2", server_name, media_id
        )

    async def hashes_of(self, server_name: str, media_id: str) -> set[str]:
        """Every content hash a media id holds: its own and its thumbnails'."""
        rows = await self.db.fetchall(
            "SELECT content_hash FROM media WHERE server_name = $1 AND media_id = $2"
            " AND content_hash IS NOT NULL"
            " UNION SELECT content_hash FROM media_thumbnails"
            " WHERE server_name = $1 AND media_id = $2",
            server_name,
            media_id,
        )
        return {str(r[0]) for r in rows}

    async def hash_in_use(self, digest: str) -> bool:
        """Does any servable row still need this file? (Quarantined media does not.)"""
        n = await self.db.fetchval(
            "SELECT COUNT(*) FROM media WHERE content_hash = $1 AND quarantined = 0",
            digest,
        )
        m = await self.db.fetchval(
            "SELECT COUNT(*) FROM media_thumbnails WHERE content_hash = $1", digest
        )
        return int(n) + int(m) > 0

    async def not_accessed_since(
        self, local_server: str, remote: bool, before_ts: int, limit: int
    ) -> list[tuple[str, str]]:
        op = "<>" if remote else "="
        rows = await self.db.fetchall(
            f"SELECT server_name, media_id FROM media WHERE server_name {op} $1"
            " AND last_access_ts < $2 ORDER BY last_access_ts LIMIT $3",
            local_server,
            before_ts,
            limit,
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def expired_pending(self, before_ts: int, limit: int) -> list[tuple[str, str]]:
        rows = await self.db.fetchall(
            "SELECT server_name, media_id FROM media WHERE content_hash IS NULL"
            " AND created_ts < $1 LIMIT $2",
            before_ts,
            limit,
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def remote_cache_size(self, local_server: str) -> int:
        total = await self.db.fetchval(
            "SELECT COALESCE(SUM(size), 0) FROM media WHERE server_name <> $1", local_server
        )
        return int(total)

    async def least_recent_remote(self, local_server: str, limit: int) -> list[MediaRow]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM media WHERE server_name <> $1"
            " ORDER BY last_access_ts LIMIT $2",
            local_server,
            limit,
        )
        return [_media(r) for r in rows]

    # --- thumbnails ---------------------------------------------------------------------

    async def get_thumbnail(
        self, server_name: str, media_id: str, width: int, height: int, method: str, animated: bool
    ) -> ThumbnailRow | None:
        row = await self.db.fetchone(
            "SELECT width, height, method, animated, content_type, content_hash, size"
            " FROM media_thumbnails WHERE server_name = $1 AND media_id = $2"
            " AND width = $3 AND height = $4 AND method = $5 AND animated = $6",
            server_name,
            media_id,
            width,
            height,
            method,
            int(animated),
        )
        if row is None:
            return None
        return ThumbnailRow(
            int(row[0]), int(row[1]), row[2], bool(row[3]), row[4], row[5], int(row[6])
        )

    async def put_thumbnail(self, server_name: str, media_id: str, t: ThumbnailRow) -> None:
        await self.db.execute(
            "INSERT INTO media_thumbnails (server_name, media_id, width, height, method,"
            " animated, content_type, content_hash, size)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            " ON CONFLICT (server_name, media_id, width, height, method, animated) DO NOTHING",
            server_name,
            media_id,
            t.width,
            t.height,
            t.method,
            int(t.animated),
            t.content_type,
            t.content_hash,
            t.size,
        )
