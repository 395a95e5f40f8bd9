"""Tables ``e2e_device_keys``, ``e2e_one_time_keys``, ``e2e_fallback_keys``,
``e2e_device_list_stream`` (DDL and reasons: migrations/0030_e2ee.sql).

Claiming a one-time key is one ``DELETE ... RETURNING`` of the oldest row
for the device: whichever claim deletes the row gets it, so a key is handed
out at most once on both engines. On PostgreSQL a concurrent claim that
picked the same row finds it gone after the winner commits and gets no row;
``claim_one_time_key`` then tries the next one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.e2ee.streams import DEVICE_LISTS, allocate, current
from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders

CLAIM_RETRIES = 50


@dataclass(frozen=True, slots=True)
class StoredDeviceKeys:
    user_id: str
    device_id: str
    ed25519: str
    curve25519: str | None
    keys: dict[str, Any]
    display_name: str | None


class DuplicateOneTimeKey(Exception):
    """A one-time key id was uploaded again with different content."""


class DeviceKeysStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # ------------------------------------------------------------ device keys

    async def get_device_keys(self, txn: Queries, user_id: str, device_id: str) -> Any:
        return await txn.fetchone(
            "SELECT ed25519, curve25519, key_json FROM e2e_device_keys"
            " WHERE user_id = $1 AND device_id = $2",
            user_id,
            device_id,
        )

    async def put_device_keys(
        self,
        txn: Queries,
        user_id: str,
        device_id: str,
        ed25519: str,
        curve25519: str | None,
        key_json: str,
    ) -> None:
        await txn.execute(
            "INSERT INTO e2e_device_keys (user_id, device_id, ed25519, curve25519, key_json)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id, device_id) DO UPDATE"
            " SET ed25519 = excluded.ed25519, curve25519 = excluded.curve25519,"
            " key_json = excluded.key_json",
            user_id,
            device_id,
            ed25519,
            curve25519,
            key_json,
        )

    async def query_device_keys(self, user_ids: list[str]) -> list[StoredDeviceKeys]:
        """Device keys of ``user_ids`` with each device's display name (local users)."""
        if not user_ids:
            return []
        marks = placeholders(len(user_ids))
        rows = await self.db.fetchall(
            "SELECT k.user_id, k.device_id, k.ed25519, k.curve25519, k.key_json, d.display_name"
            " FROM e2e_device_keys k"
            " LEFT JOIN users u ON u.user_id = k.user_id"
            " LEFT JOIN devices d ON d.user_nid = u.user_nid AND d.device_id = k.device_id"
            f" WHERE k.user_id IN ({marks})",
            *user_ids,
        )
        return [StoredDeviceKeys(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5]) for r in rows]

    async def device_names(self, user_id: str) -> dict[str, str | None]:
        """Every device of a local user (with or without keys) and its display name."""
        rows = await self.db.fetchall(
            "SELECT d.device_id, d.display_name FROM devices d"
            " JOIN users u ON u.user_nid = d.user_nid WHERE u.user_id = $1",
            user_id,
        )
        return {r[0]: r[1] for r in rows}

    # -------------------------------------------------------- one-time keys

    async def add_one_time_keys(
        self, txn: Queries, user_id: str, device_id: str, keys: list[tuple[str, str, str]]
    ) -> None:
        """Store (algorithm, key_id, key_json) rows; an identical re-upload is a no-op.

        Raises ``DuplicateOneTimeKey`` when a key id is already held with
        other content.
        """
        if not keys:
            return
        rows = await txn.fetchall(
            "SELECT algorithm, key_id, key_json FROM e2e_one_time_keys"
            " WHERE user_id = $1 AND device_id = $2",
            user_id,
            device_id,
        )
        held = {(r[0], r[1]): r[2] for r in rows}
        new_rows = []
        for algorithm, key_id, key_json in keys:
            existing = held.get((algorithm, key_id))
            if existing is None:
                held[(algorithm, key_id)] = key_json
                new_rows.append((user_id, device_id, algorithm, key_id, key_json))
            elif json.loads(existing) != json.loads(key_json):
                raise DuplicateOneTimeKey(f"{algorithm}:{key_id}")
        await txn.executemany(
            "INSERT INTO e2e_one_time_keys (user_id, device_id, algorithm, key_id, key_json)"
            " VALUES ($1, $2, $3, $4, $5)",
            new_rows,
        )

    async def one_time_key_counts(
        self, db: Database | Queries, user_id: str, device_id: str
    ) -> dict[str, int]:
        rows = await db.fetchall(
            "SELECT algorithm, COUNT(*) FROM e2e_one_time_keys"
            " WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm",
            user_id,
            device_id,
        )
        return {r[0]: int(r[1]) for r in rows}

    async def claim_one_time_key(
        self, txn: Queries, user_id: str, device_id: str, algorithm: str
    ) -> tuple[str, Any] | None:
        """Take the oldest one-time key of the device for ``algorithm``, or None if none is left."""
        for _ in range(CLAIM_RETRIES):
            row = await txn.fetchone(
                "DELETE FROM e2e_one_time_keys WHERE otk_id = ("
                " SELECT otk_id FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2"
                " AND algorithm = $3 ORDER BY otk_id LIMIT 1) RETURNING key_id, key_json",
                user_id,
                device_id,
                algorithm,
            )
            if row is not None:
                return row[0], json.loads(row[1])
            left = await txn.fetchval(
                "SELECT 1 FROM e2e_one_time_keys WHERE user_id = $1 AND device_id = $2"
                " AND algorithm = $3 LIMIT 1",
                user_id,
                device_id,
                algorithm,
            )
            if left is None:
                return None
        return None

    # --------------------------------------------------------- fallback keys

    async def set_fallback_key(
        self, txn: Queries, user_id: str, device_id: str, algorithm: str, key_id: str, key_json: str
    ) -> None:
        """Replace the device's fallback key; re-uploading the same key keeps its used flag."""
        await txn.execute(
            "INSERT INTO e2e_fallback_keys (user_id, device_id, algorithm, key_id, key_json, used)"
            " VALUES ($1, $2, $3, $4, $5, 0) ON CONFLICT (user_id, device_id, algorithm)"
            " DO UPDATE SET key_id = excluded.key_id, key_json = excluded.key_json,"
            " used = CASE WHEN e2e_fallback_keys.key_id = excluded.key_id"
            " AND e2e_fallback_keys.key_json = excluded.key_json"
            " THEN e2e_fallback_keys.used ELSE 0 END",
            user_id,
            device_id,
            algorithm,
            key_id,
            key_json,
        )

    async def claim_fallback_key(
        self, txn: Queries, user_id: str, device_id: str, algorithm: str
    ) -> tuple[str, Any] | None:
        row = await txn.fetchone(
            "UPDATE e2e_fallback_keys SET used = 1 WHERE user_id = $1 AND device_id = $2"
            " AND algorithm = $3 RETURNING key_id, key_json",
            user_id,
            device_id,
            algorithm,
        )
        return None if row is None else (row[0], json.loads(row[1]))

    async def sync_key_counts(
        self, db: Database | Queries, user_id: str, device_id: str
    ) -> tuple[dict[str, int], list[str]]:
        """``one_time_key_counts`` and ``unused_fallback_key_types`` in ONE statement:
        every /sync answers both, and on PostgreSQL each statement is a round trip."""
        rows = await db.fetchall(
            "SELECT 0 AS kind, algorithm, COUNT(*) AS n FROM e2e_one_time_keys"
            " WHERE user_id = $1 AND device_id = $2 GROUP BY algorithm"
            " UNION ALL SELECT 1 AS kind, algorithm, 0 AS n FROM e2e_fallback_keys"
            " WHERE user_id = $1 AND device_id = $2 AND used = 0",
            user_id,
            device_id,
        )
        counts = {str(r[1]): int(r[2]) for r in rows if int(r[0]) == 0}
        fallback = sorted(str(r[1]) for r in rows if int(r[0]) == 1)
        return counts, fallback

    async def unused_fallback_key_types(
        self, db: Database | Queries, user_id: str, device_id: str
    ) -> list[str]:
        rows = await db.fetchall(
            "SELECT algorithm FROM e2e_fallback_keys WHERE user_id = $1 AND device_id = $2"
            " AND used = 0 ORDER BY algorithm",
            user_id,
            device_id,
        )
        return [r[0] for r in rows]

    # ----------------------------------------------------- device-list stream

    async def bump_device_list(
        self,
        txn: Queries,
        user_id: str,
        device_ids: Iterable[str | None],
        only_for: str | None = None,
    ) -> int:
        """Record a change of ``user_id``'s devices; return the last stream position used.
        ``only_for``: the one user told of it (a user-signing key, or its signatures)."""
        devices = list(device_ids) or [None]
        positions = await allocate(txn, DEVICE_LISTS, len(devices))
        await txn.executemany(
            "INSERT INTO e2e_device_list_stream (stream_pos, user_id, device_id, only_for)"
            " VALUES ($1, $2, $3, $4)",
            [(pos, user_id, dev, only_for) for pos, dev in zip(positions, devices, strict=True)],
        )
        return positions[-1]

    async def bump_device_lists(self, txn: Queries, user_ids: Sequence[str]) -> int:
        """``bump_device_list(txn, user, [])`` for each of ``user_ids`` with one position
        allocation and one insert for all (a partial-state merge brings thousands of
        members at once: two statements each was most of its tail); the last position."""
        if not user_ids:
            return await current(txn, DEVICE_LISTS)
        positions = await allocate(txn, DEVICE_LISTS, len(user_ids))
        await txn.executemany(
            "INSERT INTO e2e_device_list_stream (stream_pos, user_id, device_id, only_for)"
            " VALUES ($1, $2, NULL, NULL)",
            list(zip(positions, user_ids, strict=True)),
        )
        return positions[-1]

    async def recent_device_changes(self, user_id: str, limit: int) -> list[tuple[int, str]]:
        """(stream_pos, device_id) of the user's latest device changes, newest first
        (cross-signing changes, which have no device, are left out)."""
        rows = await self.db.fetchall(
            "SELECT stream_pos, device_id FROM e2e_device_list_stream"
            " WHERE user_id = $1 AND device_id IS NOT NULL ORDER BY stream_pos DESC LIMIT $2",
            user_id,
            limit,
        )
        return [(int(r[0]), r[1]) for r in rows]

    async def users_changed_between(
        self, from_pos: int, to_pos: int, viewer: str | None = None
    ) -> set[str]:
        """Users with a device-list change in (from_pos, to_pos]; for ``viewer``, only
        the changes they may be told of (``only_for`` rows are for one user alone)."""
        rows = await self.db.fetchall(
            "SELECT DISTINCT user_id FROM e2e_device_list_stream"
            " WHERE stream_pos > $1 AND stream_pos <= $2 AND (only_for IS NULL OR only_for = $3)",
            from_pos,
            to_pos,
            viewer,
        )
        return {r[0] for r in rows}

    # ----------------------------------------------------------- deletion

    async def delete_devices(self, txn: Queries, user_id: str, device_ids: list[str]) -> list[str]:
        """Drop every key of these devices; return those that had device keys."""
        had_keys = []
        for device_id in device_ids:
            found = await txn.fetchval(
                "DELETE FROM e2e_device_keys WHERE user_id = $1 AND device_id = $2"
                " RETURNING device_id",
                user_id,
                device_id,
            )
            if found is not None:
                had_keys.append(device_id)
            for table in ("e2e_one_time_keys", "e2e_fallback_keys"):
                await txn.execute(
                    f"DELETE FROM {table} WHERE user_id = $1 AND device_id = $2",
                    user_id,
                    device_id,
                )
            await txn.execute(
                "DELETE FROM e2e_cross_signing_signatures"
                " WHERE target_user_id = $1 AND target_key_id = $2",
                user_id,
                device_id,
            )
        return had_keys
