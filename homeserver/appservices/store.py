"""Tables ``appservice_state`` and ``appservice_txns`` (migration 0200): each
application service's cursor in the event stream and its unacknowledged transactions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database


@dataclass(frozen=True, slots=True)
class PendingTxn:
    txn_id: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ServiceState:
    events_pos: int
    last_txn_id: int


class AppServiceStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def state(self, as_id: str, start_pos: int) -> ServiceState:
        """The service's cursor; a service seen for the first time starts at ``start_pos``."""
        row = await self.db.fetchone(
            "SELECT events_pos, last_txn_id FROM appservice_state WHERE as_id = $1", as_id
        )
        if row is None:
            await self.db.execute(
                "INSERT INTO appservice_state (as_id, events_pos, last_txn_id) VALUES ($1, $2, 0)"
                " ON CONFLICT (as_id) DO NOTHING",
                as_id,
                start_pos,
            )
            return await self.state(as_id, start_pos)
        return ServiceState(int(row["events_pos"]), int(row["last_txn_id"]))

    async def oldest_pending(self, as_id: str) -> PendingTxn | None:
        row = await self.db.fetchone(
            "SELECT txn_id, body_json FROM appservice_txns WHERE as_id = $1"
            " ORDER BY txn_id ASC LIMIT 1",
            as_id,
        )
        if row is None:
            return None
        return PendingTxn(int(row["txn_id"]), json.loads(row["body_json"]))

    async def move_cursor(self, as_id: str, events_pos: int) -> None:
        """Events up to ``events_pos`` held nothing for the service."""
        await self.db.execute(
            "UPDATE appservice_state SET events_pos = $2 WHERE as_id = $1", as_id, events_pos
        )

    async def add_txn(self, as_id: str, events_pos: int, body: dict[str, Any]) -> PendingTxn:
        """Number and keep a new transaction and move the cursor past what it carries,
        atomically: after a crash either both happened or neither did."""
        async with self.db.transaction() as q:
            txn_id = int(
                await q.fetchval(
                    "UPDATE appservice_state SET events_pos = $2, last_txn_id = last_txn_id + 1"
                    " WHERE as_id = $1 RETURNING last_txn_id",
                    as_id,
                    events_pos,
                )
            )
            await q.execute(
                "INSERT INTO appservice_txns (as_id, txn_id, body_json) VALUES ($1, $2, $3)",
                as_id,
                txn_id,
                json.dumps(body, ensure_ascii=False),
            )
        return PendingTxn(txn_id, body)

    async def complete(self, as_id: str, txn_id: int) -> None:
        await self.db.execute(
            "DELETE FROM appservice_txns WHERE as_id = $1 AND txn_id = $2", as_id, txn_id
        )
