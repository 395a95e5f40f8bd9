"""Tables ``server_keys`` and ``server_key_responses``: remote signing keys and the
self-signed responses they came in (see migration 0040 for why they are shaped so)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database

_UPSERT_KEY = (
    "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts, fetched_ts)"
    " VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key,"
    " valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts"
)
_UPSERT_RESPONSE = (
    "INSERT INTO server_key_responses (server_name, response_json, valid_until_ts, fetched_ts)"
    " VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (server_name) DO UPDATE SET response_json = excluded.response_json,"
    " valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts"
)
_UPSERT_BY_KEY = (
    "INSERT INTO server_key_responses_by_key"
    " (server_name, key_id, response_json, valid_until_ts, fetched_ts)"
    " VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (server_name, key_id) DO UPDATE SET response_json = excluded.response_json,"
    " valid_until_ts = excluded.valid_until_ts, fetched_ts = excluded.fetched_ts"
)


@dataclass(frozen=True, slots=True)
class StoredKey:
    server_name: str
    key_id: str
    verify_key: str  # unpadded base64
    valid_until_ts: int


@dataclass(frozen=True, slots=True)
class StoredResponse:
    response: dict[str, Any]
    valid_until_ts: int
    fetched_ts: int


class ServerKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_key(self, server_name: str, key_id: str) -> StoredKey | None:
        row = await self.db.fetchone(
            "SELECT verify_key, valid_until_ts FROM server_keys"
            " WHERE server_name = $1 AND key_id = $2",
            server_name,
            key_id,
        )
        if row is None:
            return None
        return StoredKey(server_name, key_id, row["verify_key"], int(row["valid_until_ts"]))

    async def store_response(
        self,
        server_name: str,
        response: dict[str, Any],
        keys: Sequence[StoredKey],
        valid_until_ts: int,
        now_ms: int,
    ) -> None:
        """Keep a verified key response and its keys, in one transaction."""
        async with self.db.transaction() as txn:
            await txn.executemany(
                _UPSERT_KEY,
                [(k.server_name, k.key_id, k.verify_key, k.valid_until_ts, now_ms) for k in keys],
            )
            text = json.dumps(response)
            await txn.execute(_UPSERT_RESPONSE, server_name, text, valid_until_ts, now_ms)
            verify_keys = response.get("verify_keys")
            await txn.executemany(
                _UPSERT_BY_KEY,
                [
                    (server_name, key_id, text, valid_until_ts, now_ms)
                    for key_id in (verify_keys if isinstance(verify_keys, dict) else {})
                ],
            )

    async def get_response(self, server_name: str) -> StoredResponse | None:
        row = await self.db.fetchone(
            "SELECT response_json, valid_until_ts, fetched_ts FROM server_key_responses"
            " WHERE server_name = $1",
            server_name,
        )
        if row is None:
            return None
        return StoredResponse(
            json.loads(row["response_json"]), int(row["valid_until_ts"]), int(row["fetched_ts"])
        )

    async def get_responses_by_key(self, server_name: str) -> dict[str, StoredResponse]:
        """The latest response that published each key id of ``server_name``."""
        rows = await self.db.fetchall(
            "SELECT key_id, response_json, valid_until_ts, fetched_ts"
            " FROM server_key_responses_by_key WHERE server_name = $1",
            server_name,
        )
        return {
            row["key_id"]: StoredResponse(
                json.loads(row["response_json"]),
                int(row["valid_until_ts"]),
                int(row["fetched_ts"]),
            )
            for row in rows
        }
