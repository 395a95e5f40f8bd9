"""Tables ``federation_remote_device_lists``, ``federation_remote_devices``,
``federation_remote_cross_signing`` (DDL and reasons: migrations/0045_federation_outbox.sql).

Key objects are stored as the origin served them, opaque JSON text.

A list is kept only while the user shares a room with one of our users (spec:
"Device Management"): the origin stops telling us about changes once we share
none, so a list kept past that would go stale unseen. ``shared_with_local``
and ``tracked_in_room`` read ``room_memberships`` (current joins) for that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders

# Users per IN list (SQLite bounds the number of bound values in one statement).
CHUNK = 500


@dataclass(frozen=True, slots=True)
class RemoteDevice:
    user_id: str
    device_id: str
    display_name: str | None
    keys: dict[str, Any] | None


class RemoteDeviceListStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def stream_ids(self, user_ids: list[str]) -> dict[str, int]:
        """The last applied stream_id of every tracked user among ``user_ids``."""
        if not user_ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT user_id, stream_id FROM federation_remote_device_lists"
            f" WHERE user_id IN ({placeholders(len(user_ids))})",
            *user_ids,
        )
        return {r[0]: int(r[1]) for r in rows}

    async def replace_user(
        self,
        txn: Queries,
        user_id: str,
        stream_id: int,
        devices: list[RemoteDevice],
        cross_signing: dict[str, dict[str, Any]],
        now: int,
    ) -> None:
        """A full resync: the user's whole device list and cross-signing keys.

        The user's ``federation_remote_device_lists`` row is written first: its row lock
        serialises two resyncs of one user (a /keys/query resync beside the background
        one). Otherwise, on PostgreSQL, the second's DELETE misses the rows the first
        inserted and its INSERT then hits their primary key."""
        await self.set_stream_id(txn, user_id, stream_id, now)
        await txn.execute("DELETE FROM federation_remote_devices WHERE user_id = $1", user_id)
        await txn.execute("DELETE FROM federation_remote_cross_signing WHERE user_id = $1", user_id)
        await txn.executemany(
            "INSERT INTO federation_remote_devices (user_id, device_id, display_name, keys_json)"
            " VALUES ($1, $2, $3, $4)",
            [
                (
                    user_id,
                    d.device_id,
                    d.display_name,
                    None if d.keys is None else json.dumps(d.keys),
                )
                for d in devices
            ],
        )
        for usage, key in cross_signing.items():
            await self.put_cross_signing(txn, user_id, usage, key)

    async def set_stream_id(self, txn: Queries, user_id: str, stream_id: int, now: int) -> None:
        await txn.execute(
            "INSERT INTO federation_remote_device_lists (user_id, stream_id, synced_ts)"
            " VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE SET"
            " stream_id = excluded.stream_id, synced_ts = excluded.synced_ts",
            user_id,
            stream_id,
            now,
        )

    async def put_device(self, txn: Queries, device: RemoteDevice) -> None:
        await txn.execute(
            "INSERT INTO federation_remote_devices (user_id, device_id, display_name, keys_json)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id) DO UPDATE SET"
            " display_name = excluded.display_name, keys_json = excluded.keys_json",
            device.user_id,
            device.device_id,
            device.display_name,
            None if device.keys is None else json.dumps(device.keys),
        )

    async def delete_device(self, txn: Queries, user_id: str, device_id: str) -> None:
        await txn.execute(
            "DELETE FROM federation_remote_devices WHERE user_id = $1 AND device_id = $2",
            user_id,
            device_id,
        )

    async def put_cross_signing(
        self, txn: Queries, user_id: str, usage: str, key: dict[str, Any]
    ) -> None:
        await txn.execute(
            "INSERT INTO federation_remote_cross_signing (user_id, usage, key_json)"
            " VALUES ($1, $2, $3) ON CONFLICT (user_id, usage) DO UPDATE SET"
            " key_json = excluded.key_json",
            user_id,
            usage,
            json.dumps(key),
        )

    async def devices_of(self, user_ids: list[str]) -> list[RemoteDevice]:
        if not user_ids:
            return []
        rows = await self.db.fetchall(
            "SELECT user_id, device_id, display_name, keys_json FROM federation_remote_devices"
            f" WHERE user_id IN ({placeholders(len(user_ids))})",
            *user_ids,
        )
        return [
            RemoteDevice(r[0], r[1], r[2], None if r[3] is None else json.loads(r[3])) for r in rows
        ]

    async def cross_signing_of(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        """{user_id: {usage: key}} for ``user_ids``."""
        if not user_ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT user_id, usage, key_json FROM federation_remote_cross_signing"
            f" WHERE user_id IN ({placeholders(len(user_ids))})",
            *user_ids,
        )
        out: dict[str, dict[str, Any]] = {}
        for r in rows:
            out.setdefault(r[0], {})[r[1]] = json.loads(r[2])
        return out

    async def shared_with_local(self, user_ids: list[str], server_name: str) -> set[str]:
        """Those of ``user_ids`` joined to a room where a user of ``server_name`` is
        joined too."""
        out: set[str] = set()
        for start in range(0, len(user_ids), CHUNK):
            chunk = user_ids[start : start + CHUNK]
            n = len(chunk)
            rows = await self.db.fetchall(
                "SELECT DISTINCT theirs.user_id FROM room_memberships theirs"
                " JOIN room_memberships ours ON ours.room_nid = theirs.room_nid"
                f" WHERE theirs.user_id IN ({placeholders(n)}) AND theirs.membership = 'join'"
                f" AND ours.membership = 'join' AND ours.user_id LIKE ${n + 1}",
                *chunk,
                "%:" + server_name,
            )
            out.update(str(r[0]) for r in rows)
        return out

    async def tracked_in_room(self, room_nid: int) -> list[str]:
        """Tracked users joined to the room (whose lists a leave may orphan)."""
        rows = await self.db.fetchall(
            "SELECT l.user_id FROM federation_remote_device_lists l"
            " JOIN room_memberships m ON m.user_id = l.user_id"
            " WHERE m.room_nid = $1 AND m.membership = 'join'",
            room_nid,
        )
        return [str(r[0]) for r in rows]

    async def want_resync(self, user_id: str, now: int) -> None:
        """Ask the background lease's holder to resync ``user_id`` (several processes)."""
        await self.db.execute(
            "INSERT INTO federation_device_list_resyncs (user_id, requested_ms) VALUES ($1, $2)"
            " ON CONFLICT (user_id) DO UPDATE SET requested_ms = excluded.requested_ms",
            user_id,
            now,
        )

    async def wanted_resyncs(self, limit: int) -> list[str]:
        """Users whose resync some process asked for, oldest request first."""
        rows = await self.db.fetchall(
            "SELECT user_id FROM federation_device_list_resyncs ORDER BY requested_ms LIMIT $1",
            limit,
        )
        return [str(r[0]) for r in rows]

    async def resync_done(self, user_id: str, started_ms: int) -> None:
        """A resync that started at ``started_ms`` succeeded: requests up to then are met."""
        await self.db.execute(
            "DELETE FROM federation_device_list_resyncs WHERE user_id = $1 AND requested_ms <= $2",
            user_id,
            started_ms,
        )

    async def forget(self, txn: Queries, user_ids: list[str]) -> None:
        """Drop the cached lists of ``user_ids``: they are no longer tracked."""
        for start in range(0, len(user_ids), CHUNK):
            chunk = user_ids[start : start + CHUNK]
            marks = placeholders(len(chunk))
            for table in (
                "federation_remote_devices",
                "federation_remote_cross_signing",
                "federation_remote_device_lists",
            ):
                await txn.execute(f"DELETE FROM {table} WHERE user_id IN ({marks})", *chunk)
