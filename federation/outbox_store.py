"""Tables ``federation_outbox`` and ``federation_inbound_txns``
(DDL and reasons: migrations/0045_federation_outbox.sql). Bodies are opaque JSON text."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import joined_servers_sql, placeholders

PDU = "pdu"
EDU = "edu"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    outbox_id: int
    kind: str
    edu_type: str | None
    body: Any


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_edu(
        self,
        destination: str,
        edu_type: str,
        content: dict[str, Any],
        key: str | None,
        now: int,
    ) -> None:
        """Queue one EDU; with ``key``, replace an unsent one of the same type and key."""
        async with self.db.transaction() as txn:
            if key is not None:
                await txn.execute(
                    "DELETE FROM federation_outbox WHERE destination = $1 AND edu_type = $2"
                    " AND coalesce_key = $3",
                    destination,
                    edu_type,
                    key,
                )
            await txn.execute(
                "INSERT INTO federation_outbox"
                " (destination, kind, edu_type, coalesce_key, body_json, created_ts)"
                " VALUES ($1, $2, $3, $4, $5, $6)",
                destination,
                EDU,
                edu_type,
                key,
                json.dumps(content),
                now,
            )

    async def add_pdus(self, destinations: Iterable[str], pdu: dict[str, Any], now: int) -> None:
        text = json.dumps(pdu)
        await self.db.executemany(
            "INSERT INTO federation_outbox (destination, kind, edu_type, coalesce_key,"
            " body_json, created_ts) VALUES ($1, $2, NULL, NULL, $3, $4)",
            [(d, PDU, text, now) for d in destinations],
        )

    async def add_pdus_in(
        self, q: Queries, destinations: Iterable[str], pdu: dict[str, Any], now: int
    ) -> None:
        """Queue a PDU inside the caller's transaction (the event's own persist)."""
        text = json.dumps(pdu)
        await q.executemany(
            "INSERT INTO federation_outbox (destination, kind, edu_type, coalesce_key,"
            " body_json, created_ts) VALUES ($1, $2, NULL, NULL, $3, $4)",
            [(d, PDU, text, now) for d in destinations],
        )

    async def joined_servers_in(self, q: Queries, room_nid: int) -> set[str]:
        """Servers with a joined member, read inside the persisting transaction
        (so the event's own membership change is seen). The database cuts the user ids
        down to distinct server names (everything after the first colon, ports
        included), an index probe per server (``joined_servers_sql``), on every send."""
        rows = await q.fetchall(joined_servers_sql(self.db.engine), room_nid)
        return {str(r[0]) for r in rows}

    async def pending(self, destination: str, kind: str, limit: int) -> list[OutboxRow]:
        """The oldest ``limit`` rows of ``kind`` waiting for ``destination``."""
        if limit <= 0:
            return []
        rows = await self.db.fetchall(
            "SELECT outbox_id, kind, edu_type, body_json FROM federation_outbox"
            " WHERE destination = $1 AND kind = $2 ORDER BY outbox_id LIMIT $3",
            destination,
            kind,
            limit,
        )
        return [OutboxRow(int(r[0]), r[1], r[2], json.loads(r[3])) for r in rows]

    async def ack(self, outbox_ids: list[int]) -> None:
        """Delete rows the destination has acknowledged."""
        for start in range(0, len(outbox_ids), 500):
            chunk = outbox_ids[start : start + 500]
            await self.db.execute(
                f"DELETE FROM federation_outbox WHERE outbox_id IN ({placeholders(len(chunk))})",
                *chunk,
            )

    async def destinations(self) -> list[str]:
        rows = await self.db.fetchall("SELECT DISTINCT destination FROM federation_outbox")
        return [r[0] for r in rows]

    async def count(self, destination: str) -> int:
        return int(
            await self.db.fetchval(
                "SELECT COUNT(*) FROM federation_outbox WHERE destination = $1", destination
            )
        )

    async def depth_by_kind(self) -> dict[str, int]:
        """Rows waiting, per kind (pdu, edu), over every destination (metrics)."""
        rows = await self.db.fetchall("SELECT kind, COUNT(*) FROM federation_outbox GROUP BY kind")
        depth = {PDU: 0, EDU: 0}
        depth.update({str(r[0]): int(r[1]) for r in rows})
        return depth

    # ----------------------------------------------------------- inbound txns

    async def inbound_response(self, origin: str, txn_id: str) -> dict[str, Any] | None:
        text = await self.db.fetchval(
            "SELECT response_json FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2",
            origin,
            txn_id,
        )
        return None if text is None else dict(json.loads(text))

    async def store_inbound_response(
        self, origin: str, txn_id: str, response: dict[str, Any], now: int
    ) -> None:
        await self.db.execute(
            "INSERT INTO federation_inbound_txns (origin, txn_id, response_json, received_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (origin, txn_id) DO NOTHING",
            origin,
            txn_id,
            json.dumps(response),
            now,
        )
