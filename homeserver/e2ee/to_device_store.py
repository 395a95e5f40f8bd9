"""Tables ``e2e_to_device_inbox``, ``e2e_to_device_txns``, ``e2e_to_device_outbox``
(DDL and reasons: migrations/0030_e2ee.sql). Contents are opaque JSON text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.e2ee.streams import TO_DEVICE, allocate
from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders


@dataclass(frozen=True, slots=True)
class InboxMessage:
    user_id: str
    device_id: str
    sender: str
    event_type: str
    content: str  # JSON text, never parsed here


class ToDeviceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim_txn(
        self, txn: Queries, sender: str, sender_device: str, txn_id: str, now: int
    ) -> bool:
        """Record a transaction id; False when it was handled before (a retry)."""
        row = await txn.fetchval(
            "INSERT INTO e2e_to_device_txns (sender, sender_device, txn_id, created_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (sender, sender_device, txn_id) DO NOTHING"
            " RETURNING 1",
            sender,
            sender_device,
            txn_id,
            now,
        )
        return row is not None

    async def local_devices(self, txn: Queries, user_ids: list[str]) -> dict[str, set[str]]:
        """The devices of local, non-deactivated accounts, per user id."""
        if not user_ids:
            return {}
        rows = await txn.fetchall(
            "SELECT u.user_id, d.device_id FROM users u JOIN devices d ON d.user_nid = u.user_nid"
            f" WHERE u.deactivated = 0 AND u.user_id IN ({placeholders(len(user_ids))})",
            *user_ids,
        )
        out: dict[str, set[str]] = {}
        for r in rows:
            out.setdefault(r[0], set()).add(r[1])
        return out

    async def inbox_sizes(self, txn: Queries, user_ids: list[str]) -> dict[tuple[str, str], int]:
        if not user_ids:
            return {}
        rows = await txn.fetchall(
            "SELECT user_id, device_id, COUNT(*) FROM e2e_to_device_inbox"
            f" WHERE user_id IN ({placeholders(len(user_ids))}) GROUP BY user_id, device_id",
            *user_ids,
        )
        return {(r[0], r[1]): int(r[2]) for r in rows}

    async def enqueue(self, txn: Queries, messages: list[InboxMessage]) -> int:
        """Append to the inboxes in order; return the last stream position used."""
        positions = await allocate(txn, TO_DEVICE, len(messages))
        await txn.executemany(
            "INSERT INTO e2e_to_device_inbox (stream_pos, user_id, device_id, sender,"
            " event_type, content) VALUES ($1, $2, $3, $4, $5, $6)",
            [
                (pos, m.user_id, m.device_id, m.sender, m.event_type, m.content)
                for pos, m in zip(positions, messages, strict=True)
            ],
        )
        return positions[-1]

    async def add_outbox(
        self, txn: Queries, destination: str, edu_content: dict[str, Any], now: int
    ) -> None:
        await txn.execute(
            "INSERT INTO e2e_to_device_outbox (destination, edu_json, created_ts)"
            " VALUES ($1, $2, $3)",
            destination,
            json.dumps(edu_content),
            now,
        )

    async def outbox_pending(
        self, destination: str, after_id: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """(outbox_id, m.direct_to_device EDU content) waiting for ``destination``."""
        rows = await self.db.fetchall(
            "SELECT outbox_id, edu_json FROM e2e_to_device_outbox"
            " WHERE destination = $1 AND outbox_id > $2 ORDER BY outbox_id LIMIT $3",
            destination,
            after_id,
            limit,
        )
        return [(int(r[0]), json.loads(r[1])) for r in rows]

    async def outbox_ack(self, destination: str, upto_id: int) -> None:
        await self.db.execute(
            "DELETE FROM e2e_to_device_outbox WHERE destination = $1 AND outbox_id <= $2",
            destination,
            upto_id,
        )

    async def outbox_delete(self, destination: str, outbox_ids: list[int]) -> None:
        """Delete exactly the rows a destination acknowledged (ids, not a range: on
        PostgreSQL a smaller id can commit after a larger one was read)."""
        for start in range(0, len(outbox_ids), 500):
            chunk = outbox_ids[start : start + 500]
            marks = placeholders(len(chunk), 2)
            await self.db.execute(
                "DELETE FROM e2e_to_device_outbox WHERE destination = $1"
                f" AND outbox_id IN ({marks})",
                destination,
                *chunk,
            )

    async def outbox_size(self) -> int:
        """To-device envelopes waiting for other servers, all destinations (metrics)."""
        return int(await self.db.fetchval("SELECT COUNT(*) FROM e2e_to_device_outbox"))

    async def outbox_destinations(self) -> list[str]:
        rows = await self.db.fetchall("SELECT DISTINCT destination FROM e2e_to_device_outbox")
        return [r[0] for r in rows]

    async def fetch(
        self, user_id: str, device_id: str, since_pos: int, limit: int
    ) -> list[tuple[int, str, str, str]]:
        """(stream_pos, sender, event_type, content) after ``since_pos``, oldest first."""
        rows = await self.db.fetchall(
            "SELECT stream_pos, sender, event_type, content FROM e2e_to_device_inbox"
            " WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3"
            " ORDER BY stream_pos LIMIT $4",
            user_id,
            device_id,
            since_pos,
            limit,
        )
        return [(int(r[0]), r[1], r[2], r[3]) for r in rows]

    async def inbox_devices(self) -> list[tuple[str, str]]:
        """(user_id, device_id) of every device with messages waiting."""
        rows = await self.db.fetchall("SELECT DISTINCT user_id, device_id FROM e2e_to_device_inbox")
        return [(str(r[0]), str(r[1])) for r in rows]

    async def delete_upto(self, user_id: str, device_id: str, upto_pos: int) -> None:
        await self.db.execute(
            "DELETE FROM e2e_to_device_inbox WHERE user_id = $1 AND device_id = $2"
            " AND stream_pos <= $3",
            user_id,
            device_id,
            upto_pos,
        )

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        async with self.db.transaction() as txn:
            for device_id in device_ids:
                await txn.execute(
                    "DELETE FROM e2e_to_device_inbox WHERE user_id = $1 AND device_id = $2",
                    user_id,
                    device_id,
                )
                await txn.execute(
                    "DELETE FROM e2e_to_device_txns WHERE sender = $1 AND sender_device = $2",
                    user_id,
                    device_id,
                )
